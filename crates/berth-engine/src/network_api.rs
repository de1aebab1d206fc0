//! Network API operations.
