//! `#[derive(Event)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::ctxt::Ctxt;
use crate::{attr, name};

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let attrs = attr::event(&mut cx, &input.attrs);
    let ident = &input.ident;

    let name = match &attrs.name {
        Some(lit) => {
            let value = lit.value();
            if let Err(message) = name::validate(&value) {
                cx.error_spanned_by(lit, message);
            }
            value
        }
        None => {
            let value = name::dotted_snake_case(&ident.to_string());
            if let Err(message) = name::validate(&value) {
                cx.error_spanned_by(
                    ident,
                    format!("{message}; set a valid name with `#[event(name = \"...\")]`"),
                );
            }
            value
        }
    };

    let key_fn = attrs.key.as_ref().map(|member| {
        check_key_field(&mut cx, input, member);
        quote_spanned! {member.span()=>
            fn key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::tidings::__private::key_to_string(&self.#member))
            }
        }
    });

    let version = attrs
        .version
        .as_ref()
        .map(|v| quote!(const VERSION: u32 = #v;));
    if attrs.upcast_from.is_some() && attrs.version.is_none() {
        cx.error_spanned_by(
            ident,
            "`upcast_from` needs this event's `version` (one more than the older type's)",
        );
    }
    // An event with an older version builds itself from it: decode the older payload (itself
    // upcast from its own older version, down the chain), then `From`.
    let upcast = attrs.upcast_from.as_ref().map(|older| {
        quote_spanned! {older.span()=>
            ::tidings::__codec_impl! {
                fn __decode_version<D: ::tidings::event::VersionDecoder>(
                    version: u32,
                    decoder: &mut D,
                ) -> ::core::result::Result<Self, D::Error>
                where
                    Self: ::core::marker::Sized + ::tidings::__private::DeserializeOwned,
                {
                    if version < <Self as ::tidings::Event>::VERSION {
                        return <#older as ::tidings::Event>::__decode_version(version, decoder)
                            .map(<Self as ::core::convert::From<#older>>::from);
                    }
                    decoder.decode::<Self>(version)
                }
            }
        }
    });
    // The chain is checked when it compiles: same name, versions one apart.
    let chain_check = attrs.upcast_from.as_ref().map(|older| {
        quote_spanned! {older.span()=>
            const _: () = {
                ::core::assert!(
                    ::tidings::__private::str_eq(
                        <#older as ::tidings::Event>::NAME,
                        <#ident as ::tidings::Event>::NAME,
                    ),
                    "`upcast_from` names a type with another event name",
                );
                ::core::assert!(
                    <#older as ::tidings::Event>::VERSION + 1 == <#ident as ::tidings::Event>::VERSION,
                    "`upcast_from` names a type whose version is not one less than this event's",
                );
            };
        }
    });

    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let impl_with = |key_fn: Option<TokenStream>, upcast: Option<TokenStream>| {
        quote! {
            #[automatically_derived]
            impl #impl_generics ::tidings::Event for #ident #ty_generics #where_clause {
                const NAME: &'static str = #name;
                #version
                #key_fn
                #upcast
            }
        }
    };

    match cx.check() {
        // A stub impl beside the errors keeps uses of the type from failing a second time.
        Some(errors) => {
            let stub = impl_with(None, None);
            quote! { #errors #stub }
        }
        None => {
            let event = impl_with(key_fn, upcast);
            quote! { #event #chain_check }
        }
    }
}

fn check_key_field(cx: &mut Ctxt, input: &DeriveInput, member: &syn::Member) {
    let Data::Struct(data) = &input.data else {
        cx.error_spanned_by(member, "`key = ...` names a field, so it needs a struct");
        return;
    };
    let found = match (member, &data.fields) {
        (syn::Member::Named(id), Fields::Named(fields)) => {
            fields.named.iter().any(|f| f.ident.as_ref() == Some(id))
        }
        (syn::Member::Unnamed(index), Fields::Unnamed(fields)) => {
            (index.index as usize) < fields.unnamed.len()
        }
        _ => false,
    };
    if !found {
        let shown = quote::ToTokens::to_token_stream(member).to_string();
        cx.error_spanned_by(member, format!("no field `{shown}` for the event key"));
    }
}
