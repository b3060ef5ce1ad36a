//! Redirect while asleep: which Services of a sleeping namespace get an
//! EndpointSlice of Siesta's that points at the proxy, on which proxy ports.
//! Pure: the controller's redirect pass (`controller::redirect`) reads the
//! cluster, asks [`plan`], and writes what it says; the proxy reads the
//! slices back to know which Service a redirect port stands for.

/// `endpointslice.kubernetes.io/managed-by` of Siesta's redirect slices.
pub const MANAGER: &str = "siesta.dev";
