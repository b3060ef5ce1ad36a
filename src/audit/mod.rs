//! API activity from the API server's audit events (webhook, log file, JSON lines).
//! Lands with the audit issue.
