//! `header-ops`: header edits from Kamailio's textops family, as mobile-link configs use
//! them: `remove_hf`, `remove_hf_re("^prefix")`, textopsx `keep_hf`, `append_hf`, and
//! rewriting headers to their compact forms to save bytes on the air interface.
//!
//! Steps run in a fixed order: remove, remove_prefix, keep, append, compact. Every step
//! treats compact and long forms as one header. The host-owned headers (Via,
//! Content-Length, CSeq, Call-ID) are never removed: config that would remove one is
//! refused at init, so a valid config cannot hit a protected-header refusal at run time.
//! The module always returns `Continue`. See README.md for params and an example.

use regex_lite::{Regex, RegexBuilder};
use serde::Deserialize;
use weir_sdk::{
    export_module, log, names, ApplyTo, EditError, Error, Header, Message, Module, Verdict,
};

/// Headers `keep` never removes (textopsx `keep_hf`), compact forms included.
pub const ALWAYS_KEPT: &[&str] = &[
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Content-Length",
    "Content-Type",
    "Route",
    "Record-Route",
    "Max-Forwards",
];

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Header names to keep; every other header outside [`ALWAYS_KEPT`] is removed.
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Also keep headers whose name matches this ERE (case-insensitive, unanchored).
    #[serde(default)]
    pub keep_regex: Option<String>,
    /// Header names to remove, every line.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Case-insensitive name prefixes to remove.
    #[serde(default)]
    pub remove_prefix: Vec<String>,
    /// Headers to append, each `"Name: value"`.
    #[serde(default)]
    pub append: Vec<String>,
    /// Rewrite every header that has a compact form to it.
    #[serde(default)]
    pub compact: bool,
    /// Which messages to edit (default `requests`).
    #[serde(default = "requests")]
    pub apply_to: ApplyTo,
}

// === HeaderOps ===

/// The module: the config, validated and prepared for matching.
#[derive(Debug)]
pub struct HeaderOps {
    /// `names::key`s of headers to remove.
    remove: Vec<String>,
    /// Lower-cased prefixes.
    remove_prefix: Vec<String>,
    keep: Option<Keep>,
    append: Vec<Header>,
    compact: bool,
    apply_to: ApplyTo,
}

#[derive(Debug)]
struct Keep {
    /// `names::key`s of the always-kept set plus the `keep` list.
    names: Vec<String>,
    regex: Option<Regex>,
}

impl Module for HeaderOps {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let remove = config
            .remove
            .iter()
            .map(|name| {
                check_name("remove", name)?;
                if names::is_protected(name) {
                    return Err(Error::new(format!(
                        "remove: `{name}` is owned by the host and cannot be removed"
                    )));
                }
                Ok(names::key(name))
            })
            .collect::<Result<_, Error>>()?;
        let remove_prefix = config
            .remove_prefix
            .iter()
            .map(|prefix| check_prefix(prefix))
            .collect::<Result<_, Error>>()?;
        let keep = match (config.keep, config.keep_regex) {
            (None, None) => None,
            (list, regex) => Some(Keep::new(list.unwrap_or_default(), regex)?),
        };
        let append = config
            .append
            .iter()
            .map(|entry| parse_append(entry))
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            remove,
            remove_prefix,
            keep,
            append,
            compact: config.compact,
            apply_to: config.apply_to,
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if self.apply_to.requests() {
            self.apply(msg)?;
        }
        Ok(Verdict::Continue)
    }

    fn on_reply(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if self.apply_to.replies() {
            self.apply(msg)?;
        }
        Ok(Verdict::Continue)
    }
}

export_module!(HeaderOps);

impl HeaderOps {
    /// All steps, with one `header_names` call and one host call per header edited.
    /// Without a keep or compact step the names are not needed: then one call per
    /// `remove` name, per prefix and per appended header, whatever the message holds.
    fn apply(&self, msg: &mut Message) -> Result<(), Error> {
        if self.keep.is_none() && !self.compact {
            for name in &self.remove {
                msg.remove_header(name)
                    .map_err(|e| refused("remove", name, e))?;
            }
            for prefix in &self.remove_prefix {
                msg.remove_headers_by_prefix(prefix)
                    .map_err(|e| refused("remove_prefix", prefix, e))?;
            }
            for h in &self.append {
                msg.add_header(&h.name, &h.value)
                    .map_err(|e| refused("append", &h.name, e))?;
            }
            return Ok(());
        }
        let spelled = msg.header_names();
        let removed = self.remove_unwanted(msg, &spelled)?;
        for h in &self.append {
            msg.add_header(&h.name, &h.value)
                .map_err(|e| refused("append", &h.name, e))?;
        }
        if self.compact {
            let remaining = spelled
                .iter()
                .map(String::as_str)
                .filter(|n| !removed.iter().any(|r| names::equivalent(r, n)))
                .chain(self.append.iter().map(|h| h.name.as_str()));
            compact(msg, remaining)?;
        }
        Ok(())
    }

    /// The remove, remove_prefix and keep steps; returns the headers removed (one
    /// spelling each).
    ///
    /// Removals commute, so the three steps are decided together, per header (not per
    /// spelling), and each header goes with one call: all its lines, both forms. This
    /// runs on every message: it compares names in place instead of building keys.
    fn remove_unwanted<'n>(
        &self,
        msg: &mut Message,
        spelled: &'n [String],
    ) -> Result<Vec<&'n str>, Error> {
        let mut removed: Vec<&str> = Vec::new();
        for (i, name) in spelled.iter().enumerate() {
            let seen = spelled
                .get(..i)
                .is_some_and(|before| before.iter().any(|b| names::equivalent(b, name)));
            if seen || !self.removes(name) {
                continue;
            }
            msg.remove_header(name)
                .map_err(|e| refused("remove", name, e))?;
            removed.push(name);
        }
        Ok(removed)
    }

    /// Whether the remove, remove_prefix or keep step removes this header.
    fn removes(&self, name: &str) -> bool {
        if self.remove.iter().any(|k| names::equivalent(k, name)) {
            return true;
        }
        if self
            .remove_prefix
            .iter()
            .any(|p| forms(name).any(|f| starts_with_ignore_case(f, p)))
        {
            return true;
        }
        match &self.keep {
            Some(keep) => !keep.keeps(name),
            None => false,
        }
    }
}

/// `name` starts with `lower_prefix` (already lower case), ignoring ASCII case.
fn starts_with_ignore_case(name: &str, lower_prefix: &str) -> bool {
    name.len() >= lower_prefix.len()
        && name
            .bytes()
            .zip(lower_prefix.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b)
}

/// The spellings a prefix or regex is tried against: the long form and, if there is one,
/// the compact form, whichever the message uses. (Kamailio matches the raw name only;
/// here `Content-` also removes `c:`, and `^s$` also keeps `Subject:`.)
fn forms(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(names::canonical(name)).chain(names::compact_form(name))
}

/// The compact step: one rename per header that has a compact form and is spelled
/// otherwise on at least one line.
fn compact<'n>(msg: &mut Message, spelled: impl Iterator<Item = &'n str>) -> Result<(), Error> {
    let mut done: Vec<&str> = Vec::new();
    for name in spelled {
        let Some(short) = names::compact_form(name) else {
            continue;
        };
        if name != short && !done.contains(&short) {
            msg.rename_header(names::canonical(name), short)
                .map_err(|e| refused("compact", name, e))?;
            done.push(short);
        }
    }
    Ok(())
}

impl Keep {
    fn new(list: Vec<String>, regex: Option<String>) -> Result<Self, Error> {
        let mut keys: Vec<String> = ALWAYS_KEPT.iter().map(|n| names::key(n)).collect();
        for name in &list {
            check_name("keep", name)?;
            keys.push(names::key(name));
        }
        let regex = regex
            .map(|re| {
                RegexBuilder::new(&re)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| Error::new(format!("keep_regex: `{re}` does not compile: {e}")))
            })
            .transpose()?;
        Ok(Self { names: keys, regex })
    }

    /// textopsx `keep_hf`: the always-kept set, the `keep` list, or an unanchored,
    /// case-insensitive regex match on either form of the name.
    fn keeps(&self, name: &str) -> bool {
        self.names.iter().any(|k| names::equivalent(k, name))
            || self
                .regex
                .as_ref()
                .is_some_and(|re| forms(name).any(|f| re.is_match(f)))
    }
}

// === config checks ===

fn check_name(param: &str, name: &str) -> Result<(), Error> {
    if names::is_valid(name) {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{param}: `{name}` is not a valid header name"
        )))
    }
}

fn check_prefix(prefix: &str) -> Result<String, Error> {
    check_name("remove_prefix", prefix)?;
    let lower = prefix.to_ascii_lowercase();
    // A prefix of any spelling of a host-owned header would make every message fail.
    let protected = names::PROTECTED
        .iter()
        .flat_map(|p| [Some(*p), names::compact_form(p)])
        .flatten()
        .find(|p| p.to_ascii_lowercase().starts_with(&lower));
    match protected {
        Some(p) => Err(Error::new(format!(
            "remove_prefix: `{prefix}` would remove `{p}`, which is owned by the host"
        ))),
        None => Ok(lower),
    }
}

fn parse_append(entry: &str) -> Result<Header, Error> {
    let bad = |why: &str| Error::new(format!("append: `{entry}`: {why}"));
    let (name, value) = entry
        .split_once(':')
        .ok_or_else(|| bad("expected `Name: value`"))?;
    let (name, value) = (name.trim(), value.trim());
    if !names::is_valid(name) {
        return Err(bad("invalid header name"));
    }
    if !names::is_valid_value(value) {
        return Err(bad("invalid header value"));
    }
    if names::is_protected(name) {
        return Err(bad("the header is owned by the host"));
    }
    Ok(Header::new(name, value))
}

/// An edit the host refused: log it, and fail the hook (the chain entry's `on_error`).
fn refused(step: &str, name: &str, err: EditError) -> Error {
    log::error!("header-ops: {step} `{name}` refused: {err}");
    Error::from(err).context(format!("header-ops: {step} `{name}`"))
}

// Two attributes rather than `all(test, ..)`: clippy's `allow-unwrap-in-tests` only
// recognises a plain `cfg(test)`. The test harness exists off wasm only.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;

fn requests() -> ApplyTo {
    ApplyTo::Requests
}
