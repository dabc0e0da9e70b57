//! kip-meta (in progress).
