//! `#[derive(EventSet)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr;
use crate::ctxt::Ctxt;

/// One member of the set: `Variant(Type)`.
struct Member<'a> {
    variant: &'a Ident,
    ty: &'a Type,
}

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let attrs = attr::event_set(&mut cx, &input.attrs);
    let members = members(&mut cx, input);
    match cx.check() {
        Some(errors) => {
            let stub = stub(input);
            quote! { #errors #stub }
        }
        None => generate(input, &members, &attrs),
    }
}

/// Parses and checks the variants: each must be a tuple variant with exactly one field.
fn members<'a>(cx: &mut Ctxt, input: &'a DeriveInput) -> Vec<Member<'a>> {
    let Data::Enum(data) = &input.data else {
        cx.error_spanned_by(
            &input.ident,
            "`EventSet` can only be derived for an enum whose variants each wrap one event type",
        );
        return Vec::new();
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "an event set cannot be generic");
    }
    let mut out = Vec::new();
    for variant in &data.variants {
        match &variant.fields {
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => out.push(Member {
                variant: &variant.ident,
                ty: &fields.unnamed[0].ty,
            }),
            _ => cx.error_spanned_by(
                variant,
                format!(
                    "each variant of an event set wraps exactly one event type, as in `{}(MyEvent)`",
                    variant.ident
                ),
            ),
        }
    }
    out
}

fn generate(
    input: &DeriveInput,
    members: &[Member<'_>],
    attrs: &attr::EventSetAttrs,
) -> TokenStream {
    let set = &input.ident;
    let set_name = &set.to_string();
    let variants: Vec<_> = members.iter().map(|m| m.variant).collect();
    let types: Vec<_> = members.iter().map(|m| m.ty).collect();
    let indices: Vec<usize> = (0..members.len()).collect();

    // Two members with one name would make decoding by name ambiguous. Names are consts of
    // other types, so the check runs in const evaluation, spanned on the later variant.
    let name_checks = members.iter().enumerate().flat_map(|(i, later)| {
        members[..i].iter().map(move |earlier| {
            let message = format!(
                "event set `{set_name}`: variants `{}` and `{}` have the same event name; give one of them another `#[event(name = \"...\")]`",
                earlier.variant, later.variant
            );
            let (a, b) = (earlier.ty, later.ty);
            quote_spanned! {later.ty.span()=>
                if ::tidings::__private::str_eq(
                    ::tidings::__private::member_name::<#set, #a>(),
                    ::tidings::__private::member_name::<#set, #b>(),
                ) {
                    ::core::panic!(#message);
                }
            }
        })
    });

    let empty_match = quote!(match *self {});
    let index_body = if members.is_empty() {
        empty_match.clone()
    } else {
        quote!(match self { #( #set::#variants(_) => #indices, )* })
    };
    let visit_body = |arg: TokenStream| {
        if members.is_empty() {
            quote!(match #arg {})
        } else {
            quote!(match #arg { #( #set::#variants(e) => visitor.visit(e), )* })
        }
    };
    let visit = visit_body(quote!(self));
    let visit_ref = if members.is_empty() {
        visit_body(quote!(*self))
    } else {
        visit_body(quote!(self))
    };

    let codec = (!attrs.no_codec).then(|| {
        let encode_body = if members.is_empty() {
            empty_match.clone()
        } else {
            quote!(match self { #( #set::#variants(e) => codec.encode(e), )* })
        };
        quote! {
            ::tidings::__codec_impl! {
            #[automatically_derived]
            impl ::tidings::codec::EventSetCodec for #set {
                fn encode<C: ::tidings::codec::Codec>(
                    &self,
                    codec: &C,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::tidings::codec::CodecError> {
                    #encode_body
                }

                fn encode_ref<C: ::tidings::codec::Codec>(
                    event: ::tidings::EventRef<'_, Self>,
                    codec: &C,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, ::tidings::codec::CodecError> {
                    #(
                        if let ::core::option::Option::Some(e) = event.downcast::<#types>() {
                            return codec.encode(e);
                        }
                    )*
                    ::core::result::Result::Err(::tidings::__private::not_a_member())
                }

                fn decode_version<C: ::tidings::codec::Codec>(
                    name: &str,
                    version: ::core::option::Option<u32>,
                    bytes: &[u8],
                    codec: &C,
                ) -> ::core::result::Result<Self, ::tidings::codec::DecodeError> {
                    #(
                        if name == ::tidings::__private::member_name::<#set, #types>() {
                            return ::tidings::__private::member_decode::<#set, #types, C>(
                                version.unwrap_or(1),
                                bytes,
                                codec,
                            )
                            .map(#set::#variants);
                        }
                    )*
                    let _ = (version, bytes, codec);
                    ::core::result::Result::Err(::tidings::codec::DecodeError::unknown(name))
                }
            }
            }
        }
    });

    let schema = attrs.schema.then(|| {
        quote! {
            ::tidings::__schema_impl! {
            #[automatically_derived]
            impl ::tidings::contracts::EventSetSchema for #set {
                const SET_NAME: &'static str = #set_name;

                fn member_schemas(
                    generator: &mut ::tidings::contracts::schemars::SchemaGenerator,
                ) -> ::std::vec::Vec<::tidings::contracts::MemberSchema> {
                    let _ = &generator;
                    ::std::vec![ #( ::tidings::contracts::MemberSchema::of::<#types>(generator), )* ]
                }
            }
            }
        }
    });

    quote! {
        const _: () = { #( #name_checks )* };

        #[automatically_derived]
        impl ::tidings::EventSet for #set {
            const NAMES: &'static [&'static str] = &[ #( ::tidings::__private::member_name::<#set, #types>(), )* ];
            const VERSIONS: &'static [u32] = &[ #( ::tidings::__private::member_version::<#set, #types>(), )* ];

            fn index(&self) -> usize {
                #index_body
            }

            fn visit<V: ::tidings::event::Visitor<Self>>(self, visitor: V) -> V::Output {
                #visit
            }

            fn visit_ref<V: ::tidings::event::RefVisitor<Self>>(&self, visitor: V) -> V::Output {
                #visit_ref
            }

            fn key_of(event: ::tidings::EventRef<'_, Self>) -> ::core::option::Option<::std::string::String> {
                #(
                    if let ::core::option::Option::Some(e) = event.downcast::<#types>() {
                        return ::tidings::__private::member_key::<#set, #types>(e);
                    }
                )*
                let _ = event;
                ::core::option::Option::None
            }

            fn visit_members<V: ::tidings::event::MembersVisitor<Self>>(visitor: &mut V) {
                let _ = &visitor;
                #( visitor.visit::<#types>(); )*
            }
        }

        #(
            #[automatically_derived]
            impl ::tidings::Member<#set> for #types {
                const INDEX: usize = #indices;
            }

            #[automatically_derived]
            impl ::core::convert::From<#types> for #set {
                fn from(event: #types) -> Self {
                    #set::#variants(event)
                }
            }
        )*

        #codec
        #schema
    }
}

/// Emitted beside errors so that uses of the set do not fail a second time.
fn stub(input: &DeriveInput) -> TokenStream {
    let set = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::tidings::EventSet for #set #ty_generics #where_clause {
            const NAMES: &'static [&'static str] = &[];
            fn index(&self) -> usize { ::core::unreachable!() }
            fn visit<V: ::tidings::event::Visitor<Self>>(self, _: V) -> V::Output {
                ::core::unreachable!()
            }
            fn visit_ref<V: ::tidings::event::RefVisitor<Self>>(&self, _: V) -> V::Output {
                ::core::unreachable!()
            }
            fn key_of(_: ::tidings::EventRef<'_, Self>) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::None
            }
            fn visit_members<V: ::tidings::event::MembersVisitor<Self>>(_: &mut V) {}
        }
    }
}
