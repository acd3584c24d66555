//! Shared keys: Kamailio's `xkey` modparam strings (`id=..;name=..;value=..;expires=..`)
//! parsed into [`Key`]s, and the group a module signs and verifies with.

use weir_sdk::Error;

// === Key ===

/// One shared key of a group.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The group (Kamailio `id`), compared case-insensitively.
    pub id: String,
    /// The key's name, for logs (Kamailio `name`).
    pub name: String,
    /// The secret (Kamailio `value`).
    pub value: String,
    /// Kamailio `expires` (seconds): parsed and kept, never enforced, as in Kamailio.
    pub expires: u32,
    /// Weir extension `until` (Unix seconds): the key is not used after this time.
    pub until: Option<u64>,
}

/// Keys are secrets: Debug shows everything but the value.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("value", &"<secret>")
            .field("expires", &self.expires)
            .field("until", &self.until)
            .finish()
    }
}

impl Key {
    /// Parse one `xkey` string, e.g. `id=peers;name=k1;value=secret;expires=0`.
    ///
    /// As Kamailio's `xkey`: `;`-separated `name=value` pairs, names case-insensitive,
    /// whitespace around names and values ignored, values optionally in double quotes;
    /// `id`, `name` and `value` are mandatory and non-empty. Unlike Kamailio, unknown or
    /// repeated names are refused rather than ignored.
    pub fn parse(text: &str) -> Result<Key, Error> {
        let bad = |why: String| Error::new(format!("keys: `{}`: {why}", redact(text)));
        let (mut id, mut name, mut value) = (None, None, None);
        let (mut expires, mut until) = (None, None);
        for pair in split_params(text).map_err(&bad)? {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("`{}` is not name=value", redact(pair))))?;
            let (k, v) = (k.trim().to_ascii_lowercase(), unquote(v.trim()));
            let slot = match k.as_str() {
                "id" => &mut id,
                "name" => &mut name,
                "value" => &mut value,
                "expires" => &mut expires,
                "until" => &mut until,
                other => {
                    return Err(bad(format!(
                        "unknown field `{other}` (expected id, name, value, expires, until)"
                    )))
                }
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(bad(format!("`{k}` given twice")));
            }
        }
        let required = |field: Option<String>, label: &str| match field {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(bad(format!("`{label}` is missing or empty"))),
        };
        let expires = match expires {
            None => 0,
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| bad(format!("expires `{s}` is not a number of seconds")))?,
        };
        let until = match until {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| bad(format!("until `{s}` is not a Unix time in seconds")))?,
            ),
        };
        Ok(Key {
            id: required(id, "id")?,
            name: required(name, "name")?,
            value: required(value, "value")?,
            expires,
            until,
        })
    }

    /// Whether the key may be used at `now_s` (Unix seconds).
    pub fn usable_at(&self, now_s: u64) -> bool {
        self.until.is_none_or(|until| now_s < until)
    }
}

// === KeyGroup ===

/// The keys of one group, **newest first**: Kamailio inserts each `xkey` at the head of
/// its group, so the key configured last signs and the earlier ones still verify.
#[derive(Debug, Clone)]
pub struct KeyGroup {
    keys: Vec<Key>,
    /// Whether any key has an `until`, i.e. whether the clock must be read.
    timed: bool,
}

impl KeyGroup {
    /// The group `id` out of every configured key string (other groups are parsed, so a
    /// typo anywhere is refused, then left out).
    pub fn select(all: &[String], id: &str) -> Result<KeyGroup, Error> {
        let mut keys = Vec::new();
        for text in all {
            let key = Key::parse(text)?;
            if key.id.eq_ignore_ascii_case(id) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(Error::new(format!(
                "key_id: no key of group `{id}` in `keys`"
            )));
        }
        keys.reverse();
        let timed = keys.iter().any(|k| k.until.is_some());
        Ok(KeyGroup { keys, timed })
    }

    /// Whether usability depends on the time (some key has an `until`).
    pub fn is_timed(&self) -> bool {
        self.timed
    }

    /// The keys usable at `now_s`, newest first.
    pub fn usable(&self, now_s: u64) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.usable_at(now_s))
    }
}

// === parsing helpers ===

/// Split on `;` outside double quotes.
fn split_params(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(text.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote".to_string());
    }
    out.push(text.get(start..).unwrap_or(""));
    Ok(out)
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The key string with its `value` hidden, for error messages (config errors are
/// printed by `weir check` and logged).
fn redact(text: &str) -> String {
    let Ok(parts) = split_params(text) else {
        return "<key with unterminated quote>".to_string();
    };
    parts
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("value") => format!("{}=***", k),
            _ => (*p).to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}
