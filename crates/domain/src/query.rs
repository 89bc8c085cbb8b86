//! Read-side functions over a [`StateRead`]: the same code answers on every node.

use crate::department::Department;
use crate::item::{Item, ItemStatus, Level};
use crate::state::{decode, get_typed, keys, StateRead};
use crate::{DomainError, Failure};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 500;
const SCAN_BATCH: usize = 512;

pub fn department(view: &dyn StateRead, code: &str) -> Result<Department, Failure> {
    get_typed::<Department>(view, &keys::department(code))?
        .ok_or_else(|| DomainError::not_found("department", code).into())
}

pub fn departments(view: &dyn StateRead) -> Result<Vec<Department>, Failure> {
    let mut out = vec![];
    let mut after: Option<String> = None;
    loop {
        let batch = view.scan(keys::DEPARTMENT, after.as_deref(), SCAN_BATCH)?;
        let done = batch.len() < SCAN_BATCH;
        for (k, v) in &batch {
            out.push(decode::<Department>(k, v)?);
        }
        after = batch.last().map(|(k, _)| k.clone());
        if done {
            return Ok(out);
        }
    }
}

/// `version` 0 is the latest version.
pub fn item(view: &dyn StateRead, id: &str, version: u32) -> Result<Item, Failure> {
    let key = if version == 0 {
        keys::item(id)
    } else {
        keys::item_version(id, version)
    };
    match get_typed::<Item>(view, &key)? {
        Some(item) => Ok(item),
        None if version == 0 => Err(DomainError::not_found("item", id).into()),
        None => Err(DomainError::not_found("item version", format!("{id} v{version}")).into()),
    }
}

pub fn item_history(view: &dyn StateRead, id: &str) -> Result<Vec<Item>, Failure> {
    let prefix = keys::item_versions(id);
    let mut out = vec![];
    let mut after: Option<String> = None;
    loop {
        let batch = view.scan(&prefix, after.as_deref(), SCAN_BATCH)?;
        let done = batch.len() < SCAN_BATCH;
        for (k, v) in &batch {
            out.push(decode::<Item>(k, v)?);
        }
        after = batch.last().map(|(k, _)| k.clone());
        if done {
            break;
        }
    }
    if out.is_empty() {
        return Err(DomainError::not_found("item", id).into());
    }
    Ok(out)
}

/// Filters of ListItems; `None` matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFilter {
    pub lead_department: Option<String>,
    pub involves_department: Option<String>,
    pub status: Option<ItemStatus>,
    pub field: Option<String>,
    pub level: Option<Level>,
    pub public: Option<bool>,
}

impl ItemFilter {
    pub fn matches(&self, item: &Item) -> bool {
        self.lead_department
            .as_deref()
            .is_none_or(|d| item.lead() == d)
            && self
                .involves_department
                .as_ref()
                .is_none_or(|d| item.departments().contains(d))
            && self.status.is_none_or(|s| item.status == s)
            && self
                .field
                .as_deref()
                .is_none_or(|f| item.content.field == f)
            && self.level.is_none_or(|l| item.content.level == l)
            && self.public.is_none_or(|p| item.content.public == p)
    }
}

pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty when there is nothing after this page.
    pub next_page_token: String,
}

/// Page tokens are the hex of the last key scanned: opaque to callers, and a token
/// that was not issued here is refused rather than silently restarting the list.
pub fn decode_page_token(token: &str, prefix: &str) -> Result<Option<String>, DomainError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || DomainError::invalid("page_token", "not a token returned by this list");
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok(Some(key))
}

pub fn page_size(requested: u32) -> Result<usize, DomainError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        n => Err(DomainError::invalid(
            "page_size",
            format!("{n} is more than {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Latest versions of the items matching `filter`, in id order.
pub fn items(
    view: &dyn StateRead,
    filter: &ItemFilter,
    page_size: usize,
    page_token: &str,
) -> Result<Page<Item>, Failure> {
    let mut after = decode_page_token(page_token, keys::ITEM)?;
    let mut out = vec![];
    loop {
        let batch = view.scan(keys::ITEM, after.as_deref(), SCAN_BATCH)?;
        let exhausted = batch.len() < SCAN_BATCH;
        for (k, v) in &batch {
            after = Some(k.clone());
            let item: Item = decode(k, v)?;
            if filter.matches(&item) {
                out.push(item);
                if out.len() == page_size {
                    // Only hand out a token when something may follow.
                    let more = !view.scan(keys::ITEM, Some(k), 1)?.is_empty();
                    let next_page_token = if more { hex::encode(k) } else { String::new() };
                    return Ok(Page {
                        items: out,
                        next_page_token,
                    });
                }
            }
        }
        if exhausted {
            return Ok(Page {
                items: out,
                next_page_token: String::new(),
            });
        }
    }
}
