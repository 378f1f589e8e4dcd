//! `CLIENT TRACKING`, `CLIENT CACHING`, `CLIENT GETREDIR` and `CLIENT TRACKINGINFO` for
//! strata's own clients (the tracking itself: `client_tracking/`).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::client_tracking::options::{combine, parse, Switch};
use crate::client_tracking::Tracker;
use crate::control::clients::ClientInfo;
use crate::control::Control;
use crate::protocol::Reply;

/// CLIENT TRACKING ON|OFF [options]: `args` is the whole command.
pub fn tracking(control: &Control, client: &ClientInfo, args: &[Bytes]) -> Reply {
    let rest = args.get(2..).unwrap_or_default();
    let switch = match parse(rest, |id| control.clients.get(id).is_some()) {
        Ok(s) => s,
        Err(e) => return Reply::error(e.to_string()),
    };
    let hub = &control.live.load().layers.coherence().clone().clients;
    match switch {
        Switch::Off => {
            if client.is_tracking() {
                client.set_tracker(None);
                hub.disable(client.id);
            }
        }
        Switch::On(new) => {
            let old = client.tracker();
            let options = match combine(old.as_ref().map(|t| &t.options), new) {
                Ok(o) => o,
                Err(e) => return Reply::error(e.to_string()),
            };
            let redirect = match options.redirect {
                0 => None,
                id => match control.clients.get(id) {
                    Some(target) => Some(target.inbox.clone()),
                    None => {
                        return Reply::error_static(
                            "ERR The client ID you want redirect to does not exist",
                        )
                    }
                },
            };
            let tracker = Arc::new(Tracker::new(
                client.id,
                options,
                client.inbox.clone(),
                redirect,
            ));
            client.set_tracker(Some(tracker.clone()));
            hub.enable(tracker);
        }
    }
    Reply::ok()
}

/// CLIENT CACHING YES|NO.
pub fn caching(client: &ClientInfo, args: &[Bytes]) -> Reply {
    let Some(tracker) = client.tracker() else {
        return Reply::error_static(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled",
        );
    };
    let opt = args.get(2).map_or(&b""[..], |a| a);
    if opt.eq_ignore_ascii_case(b"yes") {
        if !tracker.options.optin {
            return Reply::error_static(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
    } else if opt.eq_ignore_ascii_case(b"no") {
        if !tracker.options.optout {
            return Reply::error_static(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
    } else {
        return Reply::error_static("ERR syntax error");
    }
    client.set_caching();
    Reply::ok()
}

/// CLIENT GETREDIR: -1 without tracking, 0 without a redirect, else the client id.
pub fn getredir(client: &ClientInfo) -> Reply {
    Reply::Integer(client.tracker().map_or(-1, |t| t.options.redirect as i64))
}

/// CLIENT TRACKINGINFO: a map of `flags` (a set), `redirect` and `prefixes`.
pub fn trackinginfo(client: &ClientInfo) -> Reply {
    let tracker = client.tracker();
    let mut flags: Vec<&'static str> = Vec::new();
    match &tracker {
        None => flags.push("off"),
        Some(t) => {
            let o = &t.options;
            flags.push("on");
            if o.bcast {
                flags.push("bcast");
            }
            if o.optin {
                flags.push("optin");
                if client.caching() {
                    flags.push("caching-yes");
                }
            }
            if o.optout {
                flags.push("optout");
                if client.caching() {
                    flags.push("caching-no");
                }
            }
            if o.noloop {
                flags.push("noloop");
            }
            if o.redirect != 0 && t.redirect_broken() {
                flags.push("broken_redirect");
            }
        }
    }
    let redirect = tracker.as_ref().map_or(-1, |t| t.options.redirect as i64);
    let prefixes: Vec<Bytes> = tracker
        .as_ref()
        .map(|t| t.options.prefixes.clone())
        .unwrap_or_default();
    if client.proto() < 3 {
        return Reply::Array(vec![
            Reply::bulk("flags"),
            Reply::Array(flags.iter().map(|f| Reply::bulk(*f)).collect()),
            Reply::bulk("redirect"),
            Reply::Integer(redirect),
            Reply::bulk("prefixes"),
            Reply::Array(prefixes.into_iter().map(Reply::Bulk).collect()),
        ]);
    }
    // RESP3: the map and the set are written here (the reply shapes know flat maps only).
    let mut out = BytesMut::new();
    out.put_slice(b"%3\r\n$5\r\nflags\r\n~");
    out.put_slice(flags.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for f in &flags {
        bulk(&mut out, f.as_bytes());
    }
    out.put_slice(b"$8\r\nredirect\r\n:");
    out.put_slice(redirect.to_string().as_bytes());
    out.put_slice(b"\r\n$8\r\nprefixes\r\n*");
    out.put_slice(prefixes.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    for p in &prefixes {
        bulk(&mut out, p);
    }
    Reply::Raw(out.freeze())
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    out.put_u8(b'$');
    out.put_slice(b.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}
