//! `GET /`: the cluster page, one self-contained HTML file (inline CSS and
//! JavaScript, hand-drawn SVG, no external assets, works offline).
//!
//! Live, the page polls `/cluster` about twice a second and draws every
//! member (role, term, leader it follows, commit/applied/last log/snapshot
//! index, how far it lags the leader, whether it answers), a timeline of
//! roles and terms, a list of changes with a plain-language explanation, and
//! a box to send one command. If the server that served the page goes down,
//! it polls another member (which is why `/cluster` allows other origins).
//! It also follows every member's `/events` stream and draws the cluster as
//! its events tell it: servers, logs coloured by term, the requests they
//! send, captions naming each rule, an inspector that says why an entry is
//! not committed or a server does not vote. Served by the playground example,
//! it adds controls. With a trace inside it ([`replay_page`], [`tours_page`]:
//! `sim -html`, `sim -tour`), it replays a recorded run step by step instead
//! (NOTES.md, "Events and replays").
//!
//! Tests read its state from `data-*` attributes: `#summary[data-leader]
//! [data-term]`, `.member[data-node][data-role][data-leader]`,
//! `body[data-ready][data-mode]`, and in replays `#replay-state[data-step]
//! [data-index][data-violation][data-at-violation]`.

use super::response::Response;

/// The page's HTML.
pub const PAGE: &str = include_str!("page.html");

/// The page as a response.
pub fn response() -> Response {
    Response::new(200, "text/html; charset=utf-8", PAGE).with("Cache-Control", "no-store")
}

/// Where a replay's trace goes in the page: the contents of an empty
/// `<script type="application/json">` element the page reads at load.
const TRACE_SLOT: &str = r#"<script type="application/json" id="embedded-trace"></script>"#;
/// Where the same seed's run without the bug goes, for the side-by-side view.
const COUNTERPART_SLOT: &str =
    r#"<script type="application/json" id="embedded-counterpart"></script>"#;

/// The page with a recorded trace (JSON lines, as `sim -trace-json` writes)
/// inside it: one self-contained file that replays the run offline. With
/// `counterpart`, the same run with the bug switched off, drawn beside it.
pub fn replay_page(trace: &str, counterpart: Option<&str>) -> String {
    let fill = |slot: &str, text: &str| {
        // `<` appears in JSON only inside strings, where `\u003c` means the
        // same, so nothing in the trace can close the script element.
        let safe = text.replace('<', "\\u003c");
        slot.replace("></script>", &format!(">\n{safe}</script>"))
    };
    let page = PAGE.replacen(TRACE_SLOT, &fill(TRACE_SLOT, trace), 1);
    match counterpart {
        Some(other) => page.replacen(COUNTERPART_SLOT, &fill(COUNTERPART_SLOT, other), 1),
        None => page,
    }
}

/// Where a file of guided tours keeps them.
const TOURS_SLOT: &str = r#"<script type="application/json" id="embedded-tours"></script>"#;

/// The page with guided tours inside it, as `(name, title, trace,
/// counterpart)`: one file that plays every tour offline, with a menu.
pub fn tours_page(tours: &[(&str, &str, &str, Option<&str>)]) -> String {
    let mut json = String::from("[");
    for (i, (name, title, trace, counterpart)) in tours.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let mut o = crate::events::json::Object::new(&mut json);
        o.text("name", name)
            .text("title", title)
            .text("trace", trace);
        if let Some(c) = counterpart {
            o.text("counterpart", c);
        }
        o.close();
    }
    json.push(']');
    let safe = json.replace('<', "\\u003c");
    PAGE.replacen(
        TOURS_SLOT,
        &TOURS_SLOT.replace("></script>", &format!(">{safe}</script>")),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_page_holds_its_trace_and_nothing_in_it_closes_the_script() {
        assert!(PAGE.contains(TRACE_SLOT) && PAGE.contains(COUNTERPART_SLOT));
        let trace = "{\"kind\":\"narration\",\"text\":\"</script><b>\"}\n";
        let page = replay_page(trace, None);
        assert_eq!(
            page.matches("</script>").count(),
            PAGE.matches("</script>").count()
        );
        assert!(
            page.contains("\\u003c/script>\\u003cb>"),
            "the text survives, escaped"
        );
    }
}
