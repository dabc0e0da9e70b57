//! kip-krr (in progress).
