//! `KernelSpec` parsing: single specs and comma-separated lists; a parsed
//! spec must print back to a string that parses to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = s.parse::<kip_kernels::KernelSpec>() {
        let printed = spec.to_string();
        let again: kip_kernels::KernelSpec = printed.parse().expect("a printed spec parses");
        assert_eq!(again.to_string(), printed);
        let _ = spec.build();
    }
    let _ = kip_kernels::KernelSpec::parse_list(s);
});
