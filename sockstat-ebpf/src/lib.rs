// Present so the crate has a library target: sockstat-user names it as a build-dependency,
// which makes cargo rebuild the kernel programs when this crate changes (aya-template).
#![no_std]
