//! A restart does not recompile: compiled components are cached on disk by
//! content and engine settings. (Its own test binary: the policy engine is
//! shared per process, and this needs it to start and stop.)

use presence::policy::{Policies, PolicyConfig, Slot};

#[test]
fn a_restart_loads_compiled_plugins_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let config = PolicyConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..PolicyConfig::default()
    };

    let first = Policies::load(&config).unwrap();
    let (hits, misses) = first.compile_cache_stats().unwrap();
    assert_eq!(
        (hits, misses),
        (0, 3),
        "a fresh cache compiles the three built-ins"
    );
    first
        .install(
            Slot::Typing,
            Slot::Typing.builtin_component(),
            "again".into(),
        )
        .unwrap();
    assert_eq!(
        first.compile_cache_stats().unwrap().0,
        1,
        "re-installing the same bytes is a hit"
    );
    drop(first); // the engine stops with its last user, as on a restart

    let second = Policies::load(&config).unwrap();
    assert_eq!(
        second.compile_cache_stats().unwrap(),
        (3, 0),
        "nothing is compiled again"
    );
}
