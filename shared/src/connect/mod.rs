//! Connect sessions and the hosted connect page (DESIGN §4.8). A platform's backend creates a
//! short-lived session for one end user and hands its token to its frontend; the frontend opens
//! the broker's page, which lists the allowed providers, asks for a provider's declared inputs,
//! and starts an ordinary flow. The callback ends it with a `postMessage` to the session's
//! registered origin, or a redirect to its registered URL. No API key reaches a browser.

mod page;
mod session;

pub use page::{SCRIPT, picker_page, result_page};
pub use session::{
    ConnectSession, EndUser, SessionRequest, SessionStore, create_session, start_from_page,
    valid_session,
};
