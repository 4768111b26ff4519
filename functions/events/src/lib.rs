//! `events` (the table's DynamoDB Stream): each connection status change, signed per the Standard
//! Webhooks specification and posted to the organization's endpoints; what cannot be delivered
//! goes to the dead-letter queue (DESIGN §4.7). The delivery is `broker::events::stream`.

/// The AWS actions this function's code calls (endpoints listed, a 410's endpoint disabled, the
/// delivery ledger read and written; endpoint secrets read; dead letters sent). The stream's own
/// read actions are the event source mapping's ([`MAPPING_ACTIONS`]).
pub const AWS_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "secretsmanager:GetSecretValue",
    "sqs:SendMessage",
    "kms:Decrypt",
];

/// What the event source mapping does with the function's role: read the table's stream.
pub const MAPPING_ACTIONS: &[&str] = &[
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
];
