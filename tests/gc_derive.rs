//! `#[derive(Trace)]` (crate `gomalloc-derive`) on the shapes it accepts:
//! named, tuple and unit structs, enums, lifetimes, type and const
//! parameters, `where` clauses, `#[gc(skip)]`, self-referential types.
//!
//! What is observable without a heap: `HOLDS_GC`, the `Rebrand` type, and
//! that the generated impls exist (the `Drop` guard, `Trace` bounds). A
//! `Tracer` cannot be built outside gomalloc, so `trace` itself is only
//! type-checked here (`traces`); the compile-fail cases are doc tests in
//! `gomalloc-derive/src/lib.rs`.

// The types below exist for their derived impls; most are never built.
#![allow(dead_code)]

use gomalloc::gc::__private::MustNotImplDrop;
use gomalloc::gc::{Gc, Rebrand, Trace, Tracer};
use std::any::TypeId;
use std::fs::File;
use std::marker::PhantomData;
use std::sync::Mutex;

fn same<A: 'static, B: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<B>()
}

fn holds<T: Trace + ?Sized>() -> bool {
    T::HOLDS_GC
}

/// The derive emitted `trace` and the `Drop` guard for `T`.
fn traces<T: Trace + MustNotImplDrop>() {
    fn call<T: Trace>(x: &T, t: &mut Tracer<'_>) {
        x.trace(t);
    }
    let _ = call::<T>;
}

#[derive(Trace)]
struct Plain {
    a: u32,
    b: String,
    c: Vec<u64>,
}

#[derive(Trace)]
struct Node<'gc> {
    value: u32,
    next: Option<Gc<'gc, Node<'gc>>>,
}

#[derive(Trace)]
struct Bag<T> {
    items: Vec<T>,
    count: usize,
}

#[derive(Trace)]
struct Wrap<T>(T);

#[derive(Trace)]
struct Unit;

#[derive(Trace)]
struct Empty {}

#[derive(Trace)]
struct Pair(u8, Box<str>);

#[derive(Trace)]
struct Handles<'gc>(u8, Gc<'gc, u32>);

#[test]
fn holds_gc_follows_the_fields() {
    assert!(!holds::<Plain>());
    assert!(holds::<Node<'static>>());
    assert!(!holds::<Bag<u8>>());
    assert!(!holds::<Bag<String>>());
    assert!(holds::<Bag<Gc<'static, u32>>>());
    assert!(holds::<Bag<Node<'static>>>());
    assert!(!holds::<Wrap<u8>>());
    assert!(!holds::<Wrap<Wrap<Plain>>>());
    assert!(holds::<Wrap<Option<Gc<'static, Plain>>>>());
    assert!(!holds::<Unit>());
    assert!(!holds::<Empty>());
    assert!(!holds::<Pair>());
    assert!(holds::<Handles<'static>>());
    traces::<Plain>();
    traces::<Node<'_>>();
    traces::<Bag<u8>>();
    traces::<Wrap<u8>>();
    traces::<Unit>();
    traces::<Empty>();
    traces::<Pair>();
    traces::<Handles<'_>>();
}

#[derive(Trace)]
enum Shape {
    Circle { r: f64 },
    Square(f64),
    Nothing,
}

#[derive(Trace)]
enum Tree<'gc, T: Trace + 'gc> {
    Leaf(T),
    Branch { left: Gc<'gc, Tree<'gc, T>>, right: Gc<'gc, Tree<'gc, T>>, depth: u32 },
    Empty,
}

#[derive(Trace)]
enum Either<A, B> {
    Left(A),
    Right(B),
}

#[derive(Trace)]
enum Never {}

#[test]
fn enums_or_over_all_variants() {
    assert!(!holds::<Shape>());
    assert!(holds::<Tree<'static, u8>>());
    assert!(!holds::<Either<u8, String>>());
    assert!(holds::<Either<u8, Gc<'static, u8>>>());
    assert!(holds::<Either<Gc<'static, u8>, u8>>());
    assert!(!holds::<Never>());
    traces::<Shape>();
    traces::<Tree<'_, u8>>();
    traces::<Either<u8, u8>>();
    traces::<Never>();
}

#[derive(Trace)]
struct Bounded<T, U>
where
    T: Clone + Default,
    U: Copy,
{
    t: T,
    u: Option<U>,
}

#[derive(Trace)]
struct Arr<T, const N: usize = 4> {
    xs: [T; N],
}

#[derive(Trace)]
struct Branded<'gc, T: 'gc, const N: usize>
where
    T: Copy,
{
    handles: [Option<Gc<'gc, Plain>>; N],
    extra: T,
}

#[derive(Trace)]
struct Unsized<T: ?Sized> {
    b: Box<T>,
}

#[derive(Trace)]
struct TwoLifetimes<'a, 'b> {
    a: &'static str,
    g: Gc<'a, u32>,
    h: Gc<'b, u32>,
}

#[test]
fn generics_where_clauses_and_const_generics() {
    assert!(!holds::<Bounded<u8, u16>>());
    assert!(holds::<Bounded<Option<Gc<'static, u8>>, u8>>());
    assert!(!holds::<Arr<u8>>());
    assert!(!holds::<Arr<u8, 0>>());
    assert!(holds::<Arr<Gc<'static, u8>, 2>>());
    assert!(holds::<Branded<'static, u8, 3>>());
    assert!(!holds::<Unsized<str>>());
    assert!(!holds::<Unsized<[u32]>>());
    assert!(holds::<Unsized<[Gc<'static, u32>]>>());
    assert!(holds::<TwoLifetimes<'static, 'static>>());
    traces::<Bounded<u8, u8>>();
    traces::<Arr<u8, 7>>();
    traces::<Branded<'_, u8, 1>>();
    traces::<Unsized<str>>();
    traces::<TwoLifetimes<'_, '_>>();
}

#[derive(Trace)]
struct WithSkip {
    n: u32,
    #[gc(skip)]
    file: Option<File>,
    #[gc(skip)]
    lock: Mutex<u32>,
}

#[derive(Trace)]
struct SkipHandles<'gc> {
    #[gc(skip)]
    lock: Mutex<Vec<u8>>,
    node: Gc<'gc, Node<'gc>>,
}

#[derive(Trace)]
struct Tagged<T: 'static> {
    #[gc(skip)]
    marker: PhantomData<T>,
    #[gc(skip)]
    cell: std::cell::Cell<u32>,
}

#[derive(Trace)]
enum SkipInVariants {
    A(#[gc(skip)] Mutex<u8>, u8),
    B {
        #[gc(skip)]
        f: File,
    },
}

#[test]
fn skipped_fields_need_no_trace_and_do_not_count() {
    assert!(!holds::<WithSkip>());
    assert!(holds::<SkipHandles<'static>>());
    // `PhantomData<T>` has no `Trace` impl; skipped, the struct holds none.
    assert!(!holds::<Tagged<Gc<'static, u8>>>());
    assert!(!holds::<SkipInVariants>());
    traces::<WithSkip>();
    traces::<SkipHandles<'_>>();
    traces::<Tagged<u8>>();
    traces::<SkipInVariants>();
}

/// Recursion through `Box`: the field names the type itself, so it counts as
/// holding handles (its own `HOLDS_GC` would be a cycle).
#[derive(Trace)]
struct List {
    value: u32,
    next: Option<Box<List>>,
}

#[derive(Trace)]
struct SelfList {
    next: Option<Box<Self>>,
}

#[derive(Trace)]
enum Expr {
    Lit(i64),
    Add(Box<Expr>, Box<Expr>),
}

/// A handle to its own type, written as `Self`.
#[derive(Trace)]
struct SelfNode<'gc> {
    next: Option<Gc<'gc, Self>>,
}

#[test]
fn self_referential_types_count_as_holding() {
    assert!(holds::<List>());
    assert!(holds::<SelfList>());
    assert!(holds::<Expr>());
    assert!(holds::<SelfNode<'static>>());
    assert!(same::<<SelfNode<'static> as Rebrand>::Of<'static>, SelfNode<'static>>());
    traces::<List>();
    traces::<SelfList>();
    traces::<Expr>();
    traces::<SelfNode<'_>>();
}

/// The type's lifetime has the name the derive uses for `Rebrand::Of`'s.
#[derive(Trace)]
struct NamedLikeTheBrand<'__gc> {
    g: Gc<'__gc, u8>,
}

#[test]
fn types_local_to_a_function() {
    assert!(same::<<NamedLikeTheBrand<'static> as Rebrand>::Of<'static>, NamedLikeTheBrand<'static>>());

    #[derive(Trace)]
    struct Local<'gc, T: Trace + 'gc> {
        value: T,
        other: Gc<'gc, T>,
        #[gc(skip)]
        lock: Mutex<u8>,
    }
    assert!(holds::<Local<'static, u8>>());
    assert!(same::<<Local<'static, u8> as Rebrand>::Of<'static>, Local<'static, u8>>());
    traces::<Local<'_, u8>>();
}

#[test]
fn rebrand_sets_the_one_lifetime() {
    assert!(same::<<Node<'static> as Rebrand>::Of<'static>, Node<'static>>());
    assert!(same::<<Handles<'static> as Rebrand>::Of<'static>, Handles<'static>>());
    assert!(same::<<Tree<'static, u8> as Rebrand>::Of<'static>, Tree<'static, u8>>());
    assert!(same::<<Branded<'static, u16, 5> as Rebrand>::Of<'static>, Branded<'static, u16, 5>>());
    // No lifetime: `Of` is the type itself.
    assert!(same::<<Plain as Rebrand>::Of<'static>, Plain>());
    assert!(same::<<Bag<String> as Rebrand>::Of<'static>, Bag<String>>());
    assert!(same::<<Arr<u8, 3> as Rebrand>::Of<'static>, Arr<u8, 3>>());
    assert!(same::<<Arr<u8> as Rebrand>::Of<'static>, Arr<u8, 4>>());
    assert!(same::<<Shape as Rebrand>::Of<'static>, Shape>());
    assert!(same::<<Bounded<u8, u8> as Rebrand>::Of<'static>, Bounded<u8, u8>>());
    assert!(same::<<Unsized<str> as Rebrand>::Of<'static>, Unsized<str>>());
    assert!(same::<<Unit as Rebrand>::Of<'static>, Unit>());

    // For a non-'static brand, checked by the type checker: `Of<'a>` is the
    // type with its lifetime set to `'a`.
    fn node<'a>(n: Node<'a>) -> <Node<'static> as Rebrand>::Of<'a> {
        n
    }
    fn tree<'a>(t: Tree<'a, u8>) -> <Tree<'static, u8> as Rebrand>::Of<'a> {
        t
    }
    fn branded<'a>(b: Branded<'a, u8, 2>) -> <Branded<'static, u8, 2> as Rebrand>::Of<'a> {
        b
    }
    assert_eq!(node(Node { value: 7, next: None }).value, 7);
    assert!(matches!(tree(Tree::Leaf(3)), Tree::Leaf(3)));
    assert_eq!(branded(Branded { handles: [None, None], extra: 9 }).extra, 9);

    // What a root needs: `Of<'gc>: Trace + 'gc` for a brand `'gc` of a
    // scope (here a local borrow).
    fn rootable<'gc, R: Rebrand>(_scope: &'gc ()) -> bool {
        fn is_gc_object<'gc, T: Trace + 'gc>(_scope: &'gc ()) -> bool {
            T::HOLDS_GC
        }
        is_gc_object::<R::Of<'gc>>(_scope)
    }
    let scope = ();
    assert!(rootable::<Node<'static>>(&scope));
    assert!(!rootable::<Plain>(&scope));
    assert!(rootable::<Tree<'static, String>>(&scope));
}

/// The derive names everything by absolute path: no import is needed, and
/// local items named like gomalloc's do not interfere.
mod hygiene {
    trait Trace {}
    struct Tracer;

    #[derive(gomalloc::gc::Trace)]
    pub struct Fields<'gc> {
        pub tracer: u32,
        pub r#type: Option<gomalloc::gc::Gc<'gc, u32>>,
        pub __gc_f0: u8,
    }

    #[derive(gomalloc::gc::Trace)]
    pub enum Variants {
        Tracer { tracer: u8 },
        SelfLike(u8),
    }
}

#[test]
fn absolute_paths_and_odd_names() {
    assert!(holds::<hygiene::Fields<'static>>());
    assert!(!holds::<hygiene::Variants>());
    traces::<hygiene::Fields<'_>>();
    traces::<hygiene::Variants>();
}
