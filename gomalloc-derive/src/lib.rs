//! `#[derive(Trace)]` for gomalloc's garbage-collected arena.
//!
//! Use it through the re-export `gomalloc::gc::Trace` (the derive macro and
//! the trait share the name, as serde's do):
//!
//! ```
//! use gomalloc::gc::{GcCell, Rebrand, Trace};
//!
//! #[derive(Trace)]
//! struct Node<'gc> {
//!     value: u32,
//!     label: String,
//!     next: GcCell<'gc, Node<'gc>>,
//!     #[gc(skip)] // not traced; must be `'static` (see below)
//!     log: std::sync::Mutex<Vec<u8>>,
//! }
//!
//! assert!(<Node<'static> as Trace>::HOLDS_GC);
//! # fn rebranded<'a>() -> Option<<Node<'static> as Rebrand>::Of<'a>> { None::<Node<'a>> }
//! ```
//!
//! Handles inside a GC object go in cells (`GcCell`, `GcVec`), whose writes
//! carry the barrier. A type with a plain `Gc` field derives `Trace` too,
//! but cannot be allocated: `Gc` is neither `Send` nor `Sync` (it must not
//! leave its scope's thread), and GC objects must be both.
//!
//! It works on structs (named, tuple or unit) and enums with any generics
//! (lifetimes, type and const parameters, `where` clauses). Every path it
//! emits is absolute (`::gomalloc::gc::...`), so it works in any crate that
//! depends on gomalloc under that name, including gomalloc's own integration
//! tests; not inside gomalloc's library itself (which would need
//! `extern crate self as gomalloc;`), nor in a crate that renames the
//! dependency.
//!
//! # What it generates, and why
//!
//! For `#[derive(Trace)] struct Pair<'gc, T, const N: usize> where T: Clone { a: T, b: [Gc<'gc, u32>; N] }`:
//!
//! 1. **The `Trace` impl.**
//!    ```text
//!    unsafe impl<'gc, T: Trace, const N: usize> Trace for Pair<'gc, T, N> where T: Clone {
//!        const HOLDS_GC: bool = <T as Trace>::HOLDS_GC || <[Gc<'gc, u32>; N] as Trace>::HOLDS_GC;
//!        fn trace(&self, tracer: &mut Tracer<'_>) {
//!            let Self { a: __gc_f0, b: __gc_f1 } = self;
//!            Trace::trace(__gc_f0, tracer);
//!            Trace::trace(__gc_f1, tracer);
//!        }
//!    }
//!    ```
//!    Every type parameter gets a `Trace` bound. `HOLDS_GC` is the `||` of
//!    the traced fields' `HOLDS_GC` (`false` with no traced field), so a type
//!    made only of plain data lands in the collector's never-traced ("noscan")
//!    objects. `trace` visits every traced field (enums: `match self`, one arm
//!    per variant, fields bound by reference). Because each traced field's
//!    type is named in `<F as Trace>`, a field that cannot be traced is a
//!    compile error pointing at that field.
//!
//!    A field whose type names the type being derived (by its name or as
//!    `Self`), as in `next: Option<Box<List>>`, contributes `true` to
//!    `HOLDS_GC` instead of its own `HOLDS_GC`: the latter would be a constant
//!    defined in terms of itself, which rustc rejects as a cycle. `true` is
//!    always allowed (only a `false` must be proven), at the cost of tracing
//!    such a type's objects even if they hold no handle. Recursion through
//!    another type (`A` holds `Box<B>`, `B` holds `Box<A>`) cannot be seen by
//!    the derive and is still a cycle error; write `Trace` by hand for one of
//!    the two.
//!
//! 2. **The `#[gc(skip)]` check.** A skipped field is not traced, so it must
//!    not be able to hold a GC handle. Handles are branded with a
//!    non-`'static` lifetime (`Gc<'gc, T>`), so a `'static` type holds none.
//!    For each skipped field the derive emits, in an anonymous `const _`, a
//!    private trait implemented for the type (with the type's own generics and
//!    `where` clauses, so `Self` and generic fields work) whose one function
//!    calls `::gomalloc::gc::__private::assert_static::<FieldType>()`. The
//!    function is never called; type-checking it proves, for every
//!    instantiation of the type, that the field type is `'static`. A skipped
//!    field whose type mentions a type parameter therefore needs a `T: 'static`
//!    bound on the type itself.
//!
//! 3. **The `Drop` guard.**
//!    `impl<'gc, T, const N: usize> ::gomalloc::gc::__private::MustNotImplDrop for Pair<'gc, T, N> where T: Clone {}`.
//!    gomalloc has `impl<T: Drop> MustNotImplDrop for T {}`, so the two
//!    impls overlap (error E0119, "conflicting implementations of trait
//!    `MustNotImplDrop`") exactly when the derived type implements `Drop`.
//!    The collector forbids `Drop` on GC objects: the sweep frees unreachable
//!    objects together, in no particular order, so a `Drop` could follow a
//!    handle to an object the same sweep already freed. There is no opt-out.
//!    (A field's own `Drop`, say a `String`'s, is fine: it cannot reach GC
//!    objects unless its type holds handles, and a type that holds handles
//!    gets its `Trace` from this derive, which forbids `Drop`, or from a
//!    hand-written `unsafe impl` that must uphold the same rule.)
//!
//! 4. **The `Rebrand` impl**, which lets a root kept between
//!    `Heap::enter` scopes hand out handles branded for the next scope.
//!    - No lifetime parameter: `Of<'__gc>` is the type itself; every type
//!      parameter is bounded `Trace + 'static`.
//!      ```text
//!      unsafe impl<T: Trace + 'static, const N: usize> Rebrand for Wrap<T, N> where ... { type Of<'__gc> = Self; }
//!      ```
//!    - One lifetime parameter `'x`: `Of<'__gc>` is the type with `'x`
//!      replaced by `'__gc`; type parameters are bounded `Trace + 'static`
//!      (so they cannot carry a brand of their own: `Wrap<Node<'static>>`
//!      rebrands to itself). The impl also requires
//!      `for<'__gc> Ty<'__gc, ...>: Trace`, which is what the trait demands of
//!      `Of<'__gc>`.
//!      ```text
//!      unsafe impl<'gc, T: Trace + 'static, const N: usize> Rebrand for Pair<'gc, T, N>
//!      where T: Clone, for<'__gc> Pair<'__gc, T, N>: Trace
//!      { type Of<'__gc> = Pair<'__gc, T, N>; }
//!      ```
//!    - Two or more lifetime parameters: no `Rebrand` impl (which one would
//!      be the brand is not known); such a type can be a GC object but not a
//!      root's type.
//!
//! Unions are rejected: the derive cannot know which field is live.
//!
//! # Attributes
//!
//! - `#[gc(skip)]` on a field (of a struct or of an enum variant): the field
//!   is not traced and does not count in `HOLDS_GC`. Its type need not
//!   implement `Trace` (a `std::fs::File`, a `Mutex<u32>`) but must be
//!   `'static`, which is checked (see 2 above). Use it for data that cannot
//!   hold handles and has no `Trace` impl, such as interior-mutable state.
//!
//! No other option exists, and `#[gc(...)]` on the type or on a variant is
//! rejected: any other use is a compile error naming the option.
//!
//! # Rejected at compile time
//!
//! Each case below is a `compile_fail` doc test; the error quoted is the one
//! rustc gives (the error codes after `compile_fail` are checked only by a
//! nightly rustdoc). The last example shows the same types compiling once
//! their fault is removed, so each case fails for its own reason.
//!
//! A type deriving `Trace` that implements `Drop` (E0119 on `MustNotImplDrop`):
//!
//! ```compile_fail,E0119
//! use gomalloc::gc::Trace;
//!
//! #[derive(Trace)]
//! struct Noisy {
//!     n: u32,
//! }
//!
//! impl Drop for Noisy {
//!     fn drop(&mut self) {}
//! }
//! ```
//!
//! `#[gc(skip)]` on a field that holds a GC handle ("lifetime may not live
//! long enough ... requires that `'gc` must outlive `'static`"):
//!
//! ```compile_fail
//! use gomalloc::gc::{Gc, Trace};
//!
//! #[derive(Trace)]
//! struct Hidden<'gc> {
//!     #[gc(skip)]
//!     next: Option<Gc<'gc, u32>>,
//! }
//! ```
//!
//! `#[gc(skip)]` on a field of a type parameter with no `'static` bound
//! (E0310, "the parameter type `T` may not live long enough"), since `T` could
//! be a `Gc`:
//!
//! ```compile_fail,E0310
//! use gomalloc::gc::Trace;
//!
//! #[derive(Trace)]
//! struct Opaque<T> {
//!     #[gc(skip)]
//!     value: T,
//! }
//! ```
//!
//! An unknown option ("unknown `gc` option `frob`; the only one is `skip`"):
//!
//! ```compile_fail
//! use gomalloc::gc::Trace;
//!
//! #[derive(Trace)]
//! struct Odd {
//!     #[gc(frob)]
//!     n: u32,
//! }
//! ```
//!
//! A union ("`Trace` cannot be derived for a union"):
//!
//! ```compile_fail
//! use gomalloc::gc::Trace;
//!
//! #[derive(Trace)]
//! union Either {
//!     a: u32,
//!     b: f32,
//! }
//! ```
//!
//! A field whose type does not implement `Trace` and is not skipped (E0277):
//!
//! ```compile_fail,E0277
//! use gomalloc::gc::Trace;
//!
//! #[derive(Trace)]
//! struct Locked {
//!     state: std::sync::Mutex<u32>,
//! }
//! ```
//!
//! The same types without their fault compile:
//!
//! ```
//! use gomalloc::gc::{Gc, Trace};
//!
//! #[derive(Trace)]
//! struct Quiet {
//!     n: u32,
//! }
//!
//! #[derive(Trace)]
//! struct Shown<'gc> {
//!     next: Option<Gc<'gc, u32>>,
//! }
//!
//! #[derive(Trace)]
//! struct Opaque<T: 'static> {
//!     #[gc(skip)]
//!     value: T,
//! }
//!
//! #[derive(Trace)]
//! struct Locked {
//!     #[gc(skip)]
//!     state: std::sync::Mutex<u32>,
//! }
//! ```

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{parse_quote, Data, DeriveInput, GenericParam, Generics, Ident, Lifetime, Member, Type};

/// Derives `gomalloc::gc::Trace`, the `Drop` guard and (for types with at
/// most one lifetime parameter) `gomalloc::gc::Rebrand`; see the crate
/// documentation.
#[proc_macro_derive(Trace, attributes(gc))]
pub fn derive_trace(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// One field of the type or of one of its variants.
struct Field {
    member: Member,
    ty: Type,
    skip: bool,
}

/// The fields of the struct (`path` = `Self`) or of one variant
/// (`path` = `Self::Variant`).
struct Shape {
    path: TokenStream,
    fields: Vec<Field>,
}

/// Everything the derive emits for `input`.
fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    reject_gc_attrs(&input.attrs, "the type", &mut errors);
    let shapes = match &input.data {
        Data::Struct(s) => vec![Shape { path: quote!(Self), fields: fields(&s.fields, &mut errors) }],
        Data::Enum(e) => e
            .variants
            .iter()
            .map(|v| {
                reject_gc_attrs(&v.attrs, "a variant", &mut errors);
                let ident = &v.ident;
                Shape { path: quote!(Self::#ident), fields: fields(&v.fields, &mut errors) }
            })
            .collect(),
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "`Trace` cannot be derived for a union: the collector could not tell which field holds the value",
            ))
        }
    };
    errors.finish()?;

    let is_enum = matches!(input.data, Data::Enum(_));
    let trace = trace_impl(input, &shapes, is_enum);
    let skip_check = skip_check(input, &shapes);
    let drop_guard = drop_guard(input);
    let rebrand = rebrand_impl(input);
    Ok(quote! {
        #trace
        #skip_check
        #drop_guard
        #rebrand
    })
}

/// Collects several errors so the user sees all of them at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// `#[gc(...)]` has no options on the type or on a variant.
fn reject_gc_attrs(attrs: &[syn::Attribute], what: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("gc")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!("`#[gc(...)]` has no options on {what}; `#[gc(skip)]` goes on a field"),
        ));
    }
}

/// The fields, with their `#[gc(...)]` options parsed.
fn fields(fields: &syn::Fields, errors: &mut Errors) -> Vec<Field> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let member = match &f.ident {
                Some(id) => Member::Named(id.clone()),
                None => Member::Unnamed(syn::Index { index: i as u32, span: f.ty.span() }),
            };
            let mut skip = false;
            for attr in f.attrs.iter().filter(|a| a.path().is_ident("gc")) {
                if let Err(e) = parse_field_attr(attr, &mut skip) {
                    errors.push(e);
                }
            }
            Field { member, ty: f.ty.clone(), skip }
        })
        .collect()
}

/// Parses one `#[gc(...)]` on a field.
fn parse_field_attr(attr: &syn::Attribute, skip: &mut bool) -> syn::Result<()> {
    if !matches!(attr.meta, syn::Meta::List(_)) {
        return Err(syn::Error::new_spanned(attr, "expected `#[gc(skip)]`"));
    }
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("skip") {
            if *skip {
                return Err(meta.error("duplicate `gc` option `skip`"));
            }
            if !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
                return Err(meta.error("`skip` takes no value: write `#[gc(skip)]`"));
            }
            *skip = true;
            Ok(())
        } else {
            let name = meta.path.to_token_stream().to_string().replace(' ', "");
            Err(meta.error(format!("unknown `gc` option `{name}`; the only one is `skip`")))
        }
    })
}

/// `Ty`'s generics with every type parameter also bounded by `bound`.
fn bounded(generics: &Generics, bound: syn::TypeParamBound, add_static: bool) -> Generics {
    let mut g = generics.clone();
    for p in &mut g.params {
        if let GenericParam::Type(t) = p {
            t.bounds.push(bound.clone());
            if add_static {
                t.bounds.push(parse_quote!('static));
            }
        }
    }
    g
}

/// True if the tokens name `ident` or `Self`: the field's type refers to the
/// type being derived.
fn mentions(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|t| match t {
        TokenTree::Ident(i) => i == *ident || i == "Self",
        TokenTree::Group(g) => mentions(g.stream(), ident),
        _ => false,
    })
}

/// The `unsafe impl Trace`.
fn trace_impl(input: &DeriveInput, shapes: &[Shape], is_enum: bool) -> TokenStream {
    let name = &input.ident;
    let generics = bounded(&input.generics, parse_quote!(::gomalloc::gc::Trace), false);
    let (impl_g, ty_g, where_g) = generics.split_for_impl();

    let holds: Vec<TokenStream> = shapes
        .iter()
        .flat_map(|s| s.fields.iter())
        .filter(|f| !f.skip)
        .map(|f| {
            let ty = &f.ty;
            if mentions(ty.to_token_stream(), name) {
                quote_spanned!(ty.span()=> true)
            } else {
                quote_spanned!(ty.span()=> <#ty as ::gomalloc::gc::Trace>::HOLDS_GC)
            }
        })
        .collect();
    let holds_gc = if holds.is_empty() { quote!(false) } else { quote!(#(#holds)||*) };

    let tracer = Ident::new("tracer", Span::call_site());
    let mut uses_tracer = false;
    let arms: Vec<TokenStream> = shapes
        .iter()
        .map(|s| {
            let mut pats = Vec::new();
            let mut calls = Vec::new();
            for (i, f) in s.fields.iter().enumerate().filter(|(_, f)| !f.skip) {
                let member = &f.member;
                let bind = format_ident!("__gc_f{}", i);
                pats.push(quote!(#member: #bind));
                calls.push(quote_spanned!(f.ty.span()=> ::gomalloc::gc::Trace::trace(#bind, #tracer);));
            }
            uses_tracer |= !calls.is_empty();
            let rest = if pats.len() < s.fields.len() { quote!(..) } else { quote!() };
            let path = &s.path;
            (quote!(#path { #(#pats,)* #rest }), quote!(#(#calls)*))
        })
        .map(|(pat, body)| if is_enum { quote!(#pat => { #body }) } else { quote!(let #pat = self; #body) })
        .collect();
    let body = match (is_enum, arms.is_empty()) {
        // An empty enum: `&Never` counts as inhabited, `Never` does not.
        (true, true) => quote!(match *self {}),
        (true, false) => quote!(match self { #(#arms)* }),
        (false, _) => quote!(#(#arms)*),
    };
    let unused = if uses_tracer { quote!() } else { quote!(let _ = #tracer;) };

    quote! {
        #[automatically_derived]
        // SAFETY: `trace` visits every field except the `#[gc(skip)]` ones,
        // which are proven `'static` (so hold no handle) by the check below;
        // `HOLDS_GC` is the `||` of the traced fields' (or `true`); the type
        // has no `Drop` (guard below), and the fields' own `Trace` impls
        // uphold the contract for what they hold.
        unsafe impl #impl_g ::gomalloc::gc::Trace for #name #ty_g #where_g {
            const HOLDS_GC: bool = #holds_gc;

            #[inline]
            fn trace(&self, #tracer: &mut ::gomalloc::gc::Tracer<'_>) {
                #unused
                #body
            }
        }
    }
}

/// Proves every `#[gc(skip)]` field's type `'static`.
fn skip_check(input: &DeriveInput, shapes: &[Shape]) -> TokenStream {
    let checks: Vec<TokenStream> = shapes
        .iter()
        .flat_map(|s| s.fields.iter())
        .filter(|f| f.skip)
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> ::gomalloc::gc::__private::assert_static::<#ty>();)
        })
        .collect();
    if checks.is_empty() {
        return quote!();
    }
    let name = &input.ident;
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();
    quote! {
        const _: () = {
            // `#[gc(skip)]` fields must be `'static`: type-checking `check`
            // proves it for every instantiation of the type.
            #[allow(dead_code)]
            trait __GcSkipIsStatic {
                fn check();
            }
            #[allow(dead_code)]
            impl #impl_g __GcSkipIsStatic for #name #ty_g #where_g {
                fn check() {
                    #(#checks)*
                }
            }
        };
    }
}

/// The impl that conflicts with gomalloc's `impl<T: Drop> MustNotImplDrop
/// for T` when the type implements `Drop`.
fn drop_guard(input: &DeriveInput) -> TokenStream {
    let name = &input.ident;
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();
    let guard = quote_spanned!(name.span()=> ::gomalloc::gc::__private::MustNotImplDrop);
    quote! {
        // A type deriving `Trace` must not implement `Drop`: if this impl
        // conflicts with `impl<T: Drop> MustNotImplDrop for T`, it does.
        #[automatically_derived]
        impl #impl_g #guard for #name #ty_g #where_g {}
    }
}

/// The `unsafe impl Rebrand`, for types with at most one lifetime parameter.
fn rebrand_impl(input: &DeriveInput) -> TokenStream {
    let name = &input.ident;
    let lifetimes: Vec<&syn::LifetimeParam> = input.generics.lifetimes().collect();
    if lifetimes.len() > 1 {
        return quote!();
    }
    // `'__gc` unless the type's own lifetime has that name.
    let taken = lifetimes.iter().any(|l| l.lifetime.ident == "__gc");
    let brand = Lifetime::new(if taken { "'__gc_brand" } else { "'__gc" }, Span::call_site());
    let mut generics = bounded(&input.generics, parse_quote!(::gomalloc::gc::Trace), true);
    let of = if lifetimes.is_empty() {
        quote!(Self)
    } else {
        let args = input.generics.params.iter().map(|p| match p {
            GenericParam::Lifetime(_) => brand.to_token_stream(),
            GenericParam::Type(t) => t.ident.to_token_stream(),
            GenericParam::Const(c) => c.ident.to_token_stream(),
        });
        let of = quote!(#name<#(#args),*>);
        generics.make_where_clause().predicates.push(parse_quote!(for<#brand> #of: ::gomalloc::gc::Trace));
        of
    };
    let (impl_g, ty_g, where_g) = generics.split_for_impl();
    quote! {
        #[automatically_derived]
        // SAFETY: `Of<'a>` is this type with its only lifetime parameter (if
        // any) set to `'a`; the type parameters are `'static`, so they carry
        // no brand. `Of<'a>` and `Of<'b>` differ only in that lifetime.
        unsafe impl #impl_g ::gomalloc::gc::Rebrand for #name #ty_g #where_g {
            type Of<#brand> = #of;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(src: &str) -> String {
        let input: DeriveInput = syn::parse_str(src).unwrap();
        match expand(&input) {
            Ok(ts) => ts.to_string(),
            Err(e) => e.to_compile_error().to_string(),
        }
    }

    #[test]
    fn errors_name_the_option() {
        let e = expand_str("struct S { #[gc(frob)] a: u32 }");
        assert!(e.contains("unknown `gc` option `frob`"), "{e}");
        let e = expand_str("struct S { #[gc(skip, skip)] a: u32 }");
        assert!(e.contains("duplicate"), "{e}");
        let e = expand_str("struct S { #[gc(skip = true)] a: u32 }");
        assert!(e.contains("takes no value"), "{e}");
        let e = expand_str("struct S { #[gc] a: u32 }");
        assert!(e.contains("expected `#[gc(skip)]`"), "{e}");
        let e = expand_str("#[gc(skip)] struct S { a: u32 }");
        assert!(e.contains("no options on the type"), "{e}");
        let e = expand_str("enum E { #[gc(skip)] A }");
        assert!(e.contains("no options on a variant"), "{e}");
        let e = expand_str("union U { a: u32 }");
        assert!(e.contains("cannot be derived for a union"), "{e}");
        // Every error at once.
        let e = expand_str("struct S { #[gc(frob)] a: u32, #[gc(frab)] b: u32 }");
        assert!(e.contains("`frob`") && e.contains("`frab`"), "{e}");
    }

    #[test]
    fn rebrand_only_up_to_one_lifetime() {
        assert!(expand_str("struct S<T> { a: T }").contains("type Of < '__gc > = Self"));
        assert!(expand_str("struct S<'a, T> { a: &'a T }").contains("type Of < '__gc > = S < '__gc , T >"));
        assert!(!expand_str("struct S<'a, 'b> { a: &'a u8, b: &'b u8 }").contains("Rebrand"));
        assert!(expand_str("struct S<'__gc> { a: &'__gc u8 }").contains("type Of < '__gc_brand > = S < '__gc_brand >"));
    }

    #[test]
    fn self_reference_counts_as_holding() {
        let e = expand_str("struct L { v: u32, next: Option<Box<L>>, again: Option<Box<Self>> }");
        assert!(
            e.contains("HOLDS_GC : bool = < u32 as :: gomalloc :: gc :: Trace > :: HOLDS_GC || true || true"),
            "{e}"
        );
    }

    /// `cargo test -p gomalloc-derive expansion -- --nocapture` shows what
    /// the derive writes for a generic struct and an enum.
    #[test]
    fn expansion() {
        for src in [
            "struct Pair<'gc, T, const N: usize> where T: Clone { a: T, b: [Gc<'gc, u32>; N], #[gc(skip)] c: u8 }",
            "enum Tree<'gc, T> { Leaf(T), Node { left: Gc<'gc, Tree<'gc, T>>, #[gc(skip)] tag: u8 }, Empty }",
        ] {
            let e = expand_str(src);
            println!("{src}\n=>\n{e}\n");
            assert!(e.contains("MustNotImplDrop"));
        }
    }
}
