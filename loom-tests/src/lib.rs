//! loom models of gomalloc's concurrent protocols. The models live in
//! `tests/` and only run when built with `RUSTFLAGS="--cfg gomalloc_loom"`,
//! which swaps the sync shim's types for loom's; see `README.md`.
