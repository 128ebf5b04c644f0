//! Reading the file's values by hand from toml's spanned tree.
//!
//! Each getter takes a table and a key; a value of the wrong type is
//! reported at its place and read as absent, and the reading goes on, so
//! one pass over the tree finds every mistake of a file. (serde's derive
//! stops at the first one, and its glue, one deserializer per type, was the
//! largest block of the binary: ~190 KB, all of it resident.)

use std::ops::Range;

use toml::de::{DeInteger, DeTable, DeValue};
use toml::Spanned;

use super::super::errors::ConfigError;
use super::super::position::Source;

/// A value of the tree, with its place.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// A table's entries in file order, each name with its place (`env`,
/// `rlimits`), the whole with its own.
pub(super) type Entries<V> = Spanned<Vec<(Spanned<String>, V)>>;

/// A whole number or a string: a mode (`0o660` or `"0660"`), seconds (`30`
/// or `"30s"`), a user or group (`0` or `"root"`).
pub(super) enum IntOrStr {
    Int(i64),
    Str(String),
}

/// One table of the file, as it is read.
pub(super) struct Table<'t, 'i> {
    entries: &'t DeTable<'i>,
    /// Its header or `{`: where a key it lacks is reported.
    span: Range<usize>,
    /// How an unknown key's message names it: "" (top level),
    /// " in [program]".
    name: &'static str,
    /// In front of a key in a message: "" or "respawn_limit.".
    prefix: &'static str,
    /// The keys whose value was refused for its type: reported, and read
    /// as absent.
    pub(super) refused: Vec<&'static str>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// The document itself.
    pub(super) fn root(doc: &'t Spanned<DeTable<'i>>) -> Self {
        Table::new(doc.get_ref(), doc.span(), "", "")
    }

    fn new(
        entries: &'t DeTable<'i>,
        span: Range<usize>,
        name: &'static str,
        prefix: &'static str,
    ) -> Self {
        Table {
            entries,
            span,
            name,
            prefix,
            refused: Vec::new(),
        }
    }

    /// Where the table stands (for a `[[socket]]`, its header).
    pub(super) fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    fn has(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}

/// Reads values out of tables, collecting every mistake with its place.
pub(super) struct Reader<'s> {
    src: &'s Source<'s>,
    pub(super) errors: Vec<ConfigError>,
}

impl<'s> Reader<'s> {
    pub(super) fn new(src: &'s Source<'s>) -> Self {
        Reader {
            src,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, at: Range<usize>, message: String) {
        self.errors.push(ConfigError {
            location: Some(self.src.at(at.start)),
            message,
        });
    }

    /// Reports every key of `t` that is not in `known`, at the key.
    pub(super) fn known_keys(&mut self, t: &Table, known: &[&str]) {
        for key in t.entries.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                let expected: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
                let message = format!(
                    "unknown field `{}`{}, expected one of {}",
                    key.get_ref().escape_debug(),
                    t.name,
                    expected.join(", ")
                );
                self.error(key.span(), message);
            }
        }
    }

    /// Reports a key that `t` must have and lacks, at the table. A key
    /// there with a value of the wrong type was reported already.
    pub(super) fn require<T>(&mut self, t: &Table, key: &str, got: Option<T>) -> Option<T> {
        if got.is_none() && !t.has(key) {
            let message = format!("missing field `{key}`{}", t.name);
            self.error(t.span(), message);
        }
        got
    }

    /// The value at `key` converted by `take`, or, when `take` refuses its
    /// type, None and a mistake: "KEY: expected WHAT, not the integer 5".
    fn typed<'t, 'i, T>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        what: &str,
        take: impl FnOnce(&'t DeValue<'i>) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let value = t.entries.get(key)?;
        match take(value.get_ref()) {
            Some(v) => Some(Spanned::new(value.span(), v)),
            None => {
                t.refused.push(key);
                self.wrong_type(value, &format!("{}{key}", t.prefix), what);
                None
            }
        }
    }

    fn wrong_type(&mut self, value: &Value, name: &str, what: &str) {
        let message = format!("{name}: expected {what}, not {}", describe(value.get_ref()));
        self.error(value.span(), message);
    }

    pub(super) fn string(&mut self, t: &mut Table, key: &'static str) -> Option<Spanned<String>> {
        self.typed(t, key, "a string", string_of)
    }

    /// A string that holds a duration: only the message differs.
    pub(super) fn duration(&mut self, t: &mut Table, key: &'static str) -> Option<Spanned<String>> {
        self.typed(t, key, "a duration such as \"10s\"", string_of)
    }

    pub(super) fn bool(&mut self, t: &mut Table, key: &'static str) -> Option<Spanned<bool>> {
        self.typed(t, key, "true or false", DeValue::as_bool)
    }

    pub(super) fn integer(&mut self, t: &mut Table, key: &'static str) -> Option<Spanned<i64>> {
        let n = self.typed(t, key, "a whole number", |v| v.as_integer())?;
        self.fits(t, key, n)
    }

    /// A whole number or a string (modes, seconds, ids); `what` says which.
    pub(super) fn int_or_str(
        &mut self,
        t: &mut Table,
        key: &'static str,
        what: &str,
    ) -> Option<Spanned<IntOrStr>> {
        let value = t.entries.get(key)?;
        let got = self.int_or_str_of(value, &format!("{}{key}", t.prefix), what);
        if got.is_none() {
            t.refused.push(key);
        }
        got
    }

    fn int_or_str_of(
        &mut self,
        value: &Value,
        name: &str,
        what: &str,
    ) -> Option<Spanned<IntOrStr>> {
        let v = match value.get_ref() {
            DeValue::String(s) => IntOrStr::Str(s.to_string()),
            DeValue::Integer(i) => match int_of(i) {
                Some(n) => IntOrStr::Int(n),
                None => {
                    self.too_large(value.span(), name, i);
                    return None;
                }
            },
            _ => {
                self.wrong_type(value, name, what);
                return None;
            }
        };
        Some(Spanned::new(value.span(), v))
    }

    /// An array of strings, as one value (`command`).
    pub(super) fn strings(
        &mut self,
        t: &mut Table,
        key: &'static str,
    ) -> Option<Spanned<Vec<String>>> {
        let items = self.spanned_strings(t, key)?;
        let span = t.entries.get(key).map(Spanned::span)?;
        Some(Spanned::new(
            span,
            items.into_iter().map(Spanned::into_inner).collect(),
        ))
    }

    /// An array of strings, each with its place (`forward_signals`). An
    /// item of the wrong type is reported at the item, and the key refused.
    pub(super) fn spanned_strings(
        &mut self,
        t: &mut Table,
        key: &'static str,
    ) -> Option<Vec<Spanned<String>>> {
        let prefix = t.prefix;
        let array = self.typed(t, key, "an array of strings", DeValue::as_array)?;
        let mut items = Vec::with_capacity(array.get_ref().len());
        let mut wrong = false;
        for (i, item) in array.get_ref().iter().enumerate() {
            match item.get_ref().as_str() {
                Some(s) => items.push(Spanned::new(item.span(), s.to_string())),
                None => {
                    wrong = true;
                    self.wrong_type(item, &format!("{prefix}{key}[{i}]"), "a string");
                }
            }
        }
        if wrong {
            t.refused.push(key);
            return None;
        }
        Some(items)
    }

    /// An array of whole numbers or strings (`supplementary_groups`):
    /// `what` says what the array is, `item` what each item is.
    pub(super) fn ints_or_strs(
        &mut self,
        t: &mut Table,
        key: &'static str,
        what: &str,
        item: &str,
    ) -> Option<Spanned<Vec<Spanned<IntOrStr>>>> {
        let prefix = t.prefix;
        let array = self.typed(t, key, what, DeValue::as_array)?;
        let mut items = Vec::with_capacity(array.get_ref().len());
        for (i, value) in array.get_ref().iter().enumerate() {
            items.push(self.int_or_str_of(value, &format!("{prefix}{key}[{i}]"), item));
        }
        match items.into_iter().collect::<Option<Vec<_>>>() {
            Some(items) => Some(Spanned::new(array.span(), items)),
            None => {
                t.refused.push(key);
                None
            }
        }
    }

    /// A table (`[program]`, `respawn_limit = { ... }`), to read in turn:
    /// `name` and `prefix` as in [`Table`].
    pub(super) fn table<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        name: &'static str,
        prefix: &'static str,
    ) -> Option<Table<'t, 'i>> {
        let table = self.typed(t, key, "a table", DeValue::as_table)?;
        Some(Table::new(table.get_ref(), table.span(), name, prefix))
    }

    /// An array of tables (`[[socket]]`), each to read in turn.
    pub(super) fn tables<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
        name: &'static str,
    ) -> Vec<Table<'t, 'i>> {
        let Some(array) = self.typed(t, key, "an array of tables", DeValue::as_array) else {
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(array.get_ref().len());
        for (i, item) in array.get_ref().iter().enumerate() {
            match item.get_ref().as_table() {
                Some(table) => tables.push(Table::new(table, item.span(), name, "")),
                None => self.wrong_type(item, &format!("{key}[{i}]"), "a table"),
            }
        }
        tables
    }

    /// A table of NAME = value in file order, each name with its place
    /// (`env`, `rlimits`): the values as they are, for the caller to type.
    pub(super) fn entries<'t, 'i>(
        &mut self,
        t: &mut Table<'t, 'i>,
        key: &'static str,
    ) -> Option<Entries<&'t Value<'i>>> {
        let table = self.typed(t, key, "a table of NAME = value", DeValue::as_table)?;
        let entries = table
            .get_ref()
            .iter()
            .map(|(name, value)| (Spanned::new(name.span(), name.get_ref().to_string()), value))
            .collect();
        Some(Spanned::new(table.span(), entries))
    }

    /// [`Reader::entries`] whose values must be strings (`env`): one of
    /// another type is reported at it, left out, and the key refused.
    pub(super) fn string_entries(
        &mut self,
        t: &mut Table,
        key: &'static str,
    ) -> Option<Entries<Spanned<String>>> {
        let entries = self.entries(t, key)?;
        let span = entries.span();
        let mut strings = Vec::with_capacity(entries.get_ref().len());
        for (name, value) in entries.into_inner() {
            match value.get_ref().as_str() {
                Some(s) => strings.push((name, Spanned::new(value.span(), s.to_string()))),
                None => {
                    let at = format!("{key}: `{}`", name.get_ref().escape_debug());
                    self.wrong_type(value, &at, "a string");
                    if !t.refused.contains(&key) {
                        t.refused.push(key);
                    }
                }
            }
        }
        Some(Spanned::new(span, strings))
    }

    /// A whole number past i64 is a mistake of its own: it has the right
    /// type, and no key takes one that large.
    fn fits(
        &mut self,
        t: &mut Table,
        key: &'static str,
        n: Spanned<&DeInteger>,
    ) -> Option<Spanned<i64>> {
        match int_of(n.get_ref()) {
            Some(i) => Some(Spanned::new(n.span(), i)),
            None => {
                t.refused.push(key);
                self.too_large(n.span(), &format!("{}{key}", t.prefix), n.get_ref());
                None
            }
        }
    }

    fn too_large(&mut self, at: Range<usize>, name: &str, n: &DeInteger) {
        self.error(at, format!("{name}: {n} is too large a number"));
    }
}

fn string_of(v: &DeValue) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// An integer as i64: toml keeps its digits, in their radix.
pub(in crate::config) fn int_of(n: &DeInteger) -> Option<i64> {
    i64::from_str_radix(n.as_str(), n.radix()).ok()
}

/// A value as a message shows what was found: `the string "lots"`,
/// `the integer 30`, `a table`. A long string is cut short.
pub(in crate::config) fn describe(v: &DeValue) -> String {
    const LONG: usize = 40;
    match v {
        DeValue::String(s) if s.chars().count() > LONG => {
            let head: String = s.chars().take(LONG).collect();
            format!("the string \"{}...\"", head.escape_debug())
        }
        DeValue::String(s) => format!("the string \"{}\"", s.escape_debug()),
        DeValue::Integer(n) => format!("the integer {n}"),
        DeValue::Float(f) => format!("the float {f}"),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        DeValue::Datetime(d) => format!("the datetime {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}
