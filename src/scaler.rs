//! The only writer of workload replicas.
