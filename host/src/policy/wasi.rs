//! Deterministic stand-ins for the few WASI calls Rust's standard library
//! makes on its own: reading the environment (a panic checks
//! `RUST_BACKTRACE`), writing to stderr and stdout (a panic's message,
//! `eprintln!`), and the seed of `HashMap`'s hasher. A plugin gets an empty
//! environment, a fixed (insecure) seed, and its output kept for the host's
//! log and for the error of a failed call. Every other import, clocks,
//! files, sockets and real randomness included, still traps with a message
//! naming the call.

use wasmtime::StoreContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Component, Linker, LinkerInstance, Resource, ResourceAny, ResourceType, Val,
};

use super::engine::{StoreState, to_anyhow};

/// Most bytes of output kept per call; the rest is dropped.
pub(super) const MAX_OUTPUT: usize = 4096;
/// `HashMap` keys: fixed, so a plugin behaves the same on every call.
const SEED: (u64, u64) = (0x7072_6573_656e_6365, 0x706f_6c69_6379_2121);

/// What `get-stderr` and `get-stdout` hand out; writes to it are kept.
struct Output;

/// What waiting on an [`Output`] gives: always ready.
struct Ready;

/// Defines the stand-ins for the interfaces `component` imports, at the
/// versions it imports them.
pub(super) fn define(linker: &mut Linker<StoreState>, component: &Component) -> anyhow::Result<()> {
    let engine = component.engine().clone();
    let imports: Vec<(String, bool, bool)> = component
        .component_type()
        .imports(&engine)
        .map(|(name, item)| {
            let exports = |wanted: &str| match &item.ty {
                ComponentItem::ComponentInstance(i) => i.exports(&engine).any(|(n, _)| n == wanted),
                _ => false,
            };
            (
                name.to_owned(),
                exports("output-stream"),
                exports("pollable"),
            )
        })
        .collect();
    for (name, streams, pollables) in &imports {
        let interface = name.split('@').next().unwrap_or(name);
        let mut i = linker.instance(name).map_err(to_anyhow)?;
        stand_in(&mut i, interface, *streams, *pollables).map_err(to_anyhow)?;
    }
    Ok(())
}

fn stand_in(
    i: &mut LinkerInstance<'_, StoreState>,
    interface: &str,
    streams: bool,
    pollables: bool,
) -> wasmtime::Result<()> {
    // Every interface that names one of these types must see the same one.
    if streams {
        i.resource("output-stream", ResourceType::host::<Output>(), |_, _| {
            Ok(())
        })?;
    }
    if pollables {
        i.resource("pollable", ResourceType::host::<Ready>(), |_, _| Ok(()))?;
    }
    let ok = || Val::Result(Ok(None));
    match interface {
        "wasi:cli/environment" => {
            def(i, "get-environment", |_, _| Ok(Val::List(Vec::new())))?;
            def(i, "get-arguments", |_, _| Ok(Val::List(Vec::new())))?;
            def(i, "initial-cwd", |_, _| Ok(Val::Option(None)))?;
        }
        "wasi:cli/stderr" => def(i, "get-stderr", |store, _| own(store, Output))?,
        "wasi:cli/stdout" => def(i, "get-stdout", |store, _| own(store, Output))?,
        "wasi:io/streams" => {
            def(i, "[method]output-stream.check-write", |_, _| {
                Ok(Val::Result(Ok(Some(Box::new(Val::U64(MAX_OUTPUT as u64))))))
            })?;
            for write in ["write", "blocking-write-and-flush"] {
                def(
                    i,
                    &format!("[method]output-stream.{write}"),
                    move |store, args| {
                        if let Some(Val::List(bytes)) = args.get(1) {
                            keep(store, bytes);
                        }
                        Ok(ok())
                    },
                )?;
            }
            for flush in ["flush", "blocking-flush"] {
                def(i, &format!("[method]output-stream.{flush}"), move |_, _| {
                    Ok(ok())
                })?;
            }
            def(i, "[method]output-stream.subscribe", |store, _| {
                own(store, Ready)
            })?;
        }
        "wasi:io/poll" => {
            def(i, "[method]pollable.ready", |_, _| Ok(Val::Bool(true)))?;
            def(i, "[method]pollable.block", |_, _| {
                Ok(Val::Tuple(Vec::new()))
            })?;
            def(i, "poll", |_, args| {
                let n = match args.first() {
                    Some(Val::List(l)) => l.len() as u32,
                    _ => 0,
                };
                Ok(Val::List((0..n).map(Val::U32).collect()))
            })?;
        }
        "wasi:random/insecure-seed" => {
            def(i, "insecure-seed", |_, _| {
                Ok(Val::Tuple(vec![Val::U64(SEED.0), Val::U64(SEED.1)]))
            })?;
        }
        _ => {}
    }
    Ok(())
}

/// Defines `name` as `f`'s answer (an empty tuple: none), after releasing
/// the borrowed handles it was given, as a dynamic host function must.
fn def(
    i: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    f: impl Fn(&mut StoreContextMut<'_, StoreState>, &[Val]) -> wasmtime::Result<Val>
    + Send
    + Sync
    + 'static,
) -> wasmtime::Result<()> {
    i.func_new(name, move |mut store, _, args, out| {
        let answer = f(&mut store, args)?;
        release(&mut store, args)?;
        if let (Some(slot), false) = (
            out.first_mut(),
            matches!(&answer, Val::Tuple(t) if t.is_empty()),
        ) {
            *slot = answer;
        }
        Ok(())
    })
}

fn release(store: &mut StoreContextMut<'_, StoreState>, args: &[Val]) -> wasmtime::Result<()> {
    for a in args {
        match a {
            Val::Resource(r) if !r.owned() => r.resource_drop(&mut *store)?,
            Val::List(items) => release(store, items)?,
            _ => {}
        }
    }
    Ok(())
}

fn own<T: 'static>(store: &mut StoreContextMut<'_, StoreState>, _: T) -> wasmtime::Result<Val> {
    let handle = Resource::<T>::new_own(0);
    Ok(Val::Resource(ResourceAny::try_from_resource(
        handle,
        &mut *store,
    )?))
}

fn keep(store: &mut StoreContextMut<'_, StoreState>, bytes: &[Val]) {
    let output = &mut store.data_mut().output;
    let room = MAX_OUTPUT.saturating_sub(output.len());
    output.extend(bytes.iter().take(room).filter_map(|b| match b {
        Val::U8(b) => Some(*b),
        _ => None,
    }));
}

/// The panic message in a failed call's output (`panicked at src/lib.rs:4:5:
/// boom`), or else its last line.
pub(super) fn why(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(at) = text.find("panicked at ") {
        let rest = &text[at..];
        // `panicked at <place>:\n<message>\nnote: run with …`
        let rest = rest.split("\nnote: ").next().unwrap_or(rest);
        let mut lines = rest.lines();
        let place = lines.next().unwrap_or_default().trim_end_matches(':');
        let message = lines.collect::<Vec<_>>().join(" ");
        return Some(format!("{place}: {}", message.trim()));
    }
    text.lines().last().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panics_message_is_read_from_its_output() {
        let out = b"\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            why(out).as_deref(),
            Some("panicked at src/lib.rs:12:9: boom")
        );
        assert_eq!(why(b"one\ntwo\n").as_deref(), Some("two"));
        assert_eq!(why(b"  \n"), None);
    }
}
