//! `#[derive(Message)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::attr;
use crate::ctxt::Ctxt;

pub(crate) fn expand(input: &DeriveInput) -> TokenStream {
    let mut cx = Ctxt::default();
    let attrs = attr::message(&mut cx, &input.attrs);
    let ident = &input.ident;
    let reply = attrs.reply.map_or_else(|| quote!(()), |ty| quote!(#ty));
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let body = quote! {
        #[automatically_derived]
        impl #impl_generics ::tidings::actor::Message for #ident #ty_generics #where_clause {
            type Reply = #reply;
        }
    };
    match cx.check() {
        Some(errors) => {
            let stub = quote! {
                #[automatically_derived]
                impl #impl_generics ::tidings::actor::Message for #ident #ty_generics #where_clause {
                    type Reply = ();
                }
            };
            quote! { #errors #stub }
        }
        None => body,
    }
}
