//! Core of the OAuth connection broker.
//!
//! The four Lambda functions (`initiate`, `authorize`, `callback`, `complete`) and `brokerctl serve`
//! are thin HTTP adapters over this crate: a request travels
//! parse -> authorize caller -> domain step ([`flow`]) -> store/vault -> response ([`api`]).

pub mod api;
pub mod app;
pub mod auth;
pub mod aws;
pub mod cache;
pub mod config;
pub mod connect;
pub mod connection;
pub mod crypto;
pub mod error;
pub mod events;
pub mod flow;
pub mod ids;
pub mod org;
pub mod provider;
pub mod redirect;
pub mod secret;
pub mod source;
pub mod store;
pub mod vault;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};
pub use ids::{ConnectionId, OrgId};
pub use provider::Catalog;
