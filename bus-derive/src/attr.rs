//! Typed forms of the derives' attributes, parsed with every error recorded in the [`Ctxt`].

use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr, Token};

use crate::ctxt::Ctxt;

/// `#[event(name = "...", key = field, version = N, upcast_from = Type)]`.
#[derive(Default)]
pub(crate) struct EventAttrs {
    pub(crate) name: Option<LitStr>,
    pub(crate) key: Option<syn::Member>,
    pub(crate) version: Option<syn::LitInt>,
    pub(crate) upcast_from: Option<syn::Type>,
}

/// `#[event_set(no_codec, schema)]`.
#[derive(Default)]
pub(crate) struct EventSetAttrs {
    pub(crate) no_codec: bool,
    pub(crate) schema: bool,
}

/// `#[message(reply = Type)]`.
#[derive(Default)]
pub(crate) struct MessageAttrs {
    pub(crate) reply: Option<syn::Type>,
}

pub(crate) fn event(cx: &mut Ctxt, attrs: &[Attribute]) -> EventAttrs {
    let mut out = EventAttrs::default();
    let known = &["name", "key", "version", "upcast_from"];
    parse_each(cx, attrs, "event", known, |cx, key, meta| {
        match key {
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                set_once(cx, &meta, &mut out.name, lit);
            }
            "version" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(v) if v >= 1 => set_once(cx, &meta, &mut out.version, lit),
                    _ => cx.error_spanned_by(&lit, "`version` is a whole number from 1"),
                }
            }
            "upcast_from" => {
                let ty: syn::Type = meta.value()?.parse()?;
                set_once(cx, &meta, &mut out.upcast_from, ty);
            }
            _ => {
                let member: syn::Member = meta.value()?.parse()?;
                set_once(cx, &meta, &mut out.key, member);
            }
        }
        Ok(())
    });
    out
}

pub(crate) fn event_set(cx: &mut Ctxt, attrs: &[Attribute]) -> EventSetAttrs {
    let mut out = EventSetAttrs::default();
    parse_each(
        cx,
        attrs,
        "event_set",
        &["no_codec", "schema"],
        |cx, key, meta| {
            let flag = match key {
                "schema" => &mut out.schema,
                _ => &mut out.no_codec,
            };
            if *flag {
                cx.error_spanned_by(&meta.path, format!("duplicate `{key}`"));
            }
            *flag = true;
            Ok(())
        },
    );
    out
}

pub(crate) fn message(cx: &mut Ctxt, attrs: &[Attribute]) -> MessageAttrs {
    let mut out = MessageAttrs::default();
    parse_each(cx, attrs, "message", &["reply"], |cx, _, meta| {
        let ty: syn::Type = meta.value()?.parse()?;
        set_once(cx, &meta, &mut out.reply, ty);
        Ok(())
    });
    out
}

/// Runs `f` on every known key of every `#[ident(...)]` attribute; reports unknown keys.
fn parse_each(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    ident: &str,
    known: &[&'static str],
    mut f: impl FnMut(&mut Ctxt, &'static str, ParseNestedMeta<'_>) -> syn::Result<()>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident(ident)) {
        let result = attr.parse_nested_meta(|meta| {
            match known.iter().find(|k| meta.path.is_ident(k)) {
                Some(key) => f(cx, key, meta),
                None => {
                    let path = meta.path.clone();
                    let shown = quote::ToTokens::to_token_stream(&path).to_string();
                    let quoted: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                    let expected = match quoted.split_last() {
                        Some((last, rest)) if !rest.is_empty() => {
                            format!("{} or {last}", rest.join(", "))
                        }
                        _ => quoted.concat(),
                    };
                    cx.error_spanned_by(
                        &path,
                        format!("unknown `{ident}` attribute `{shown}`; expected {expected}"),
                    );
                    // Skip the value so that parsing can go on to the next key.
                    if meta.input.peek(Token![=]) {
                        let _: syn::Expr = meta.value()?.parse()?;
                    } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                        meta.parse_nested_meta(|inner| {
                            let _: proc_macro2::TokenStream = inner.input.parse()?;
                            Ok(())
                        })?;
                    }
                    Ok(())
                }
            }
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
}

fn set_once<T>(cx: &mut Ctxt, meta: &ParseNestedMeta<'_>, slot: &mut Option<T>, value: T) {
    if slot.is_some() {
        let key = quote::ToTokens::to_token_stream(&meta.path).to_string();
        cx.error_spanned_by(&meta.path, format!("duplicate `{key}`"));
    } else {
        *slot = Some(value);
    }
}
