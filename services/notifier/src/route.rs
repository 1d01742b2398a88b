//! Which receivers an alert goes to, and under which route (its grouping and repeats):
//! routes are tried in file order; the first that matches wins unless it says `continue`,
//! as in Alertmanager. A receiver reached by two routes is served by the first.

use vitals_protocol::{AlertName, glob_match};

use crate::config::Route;

/// The `(receiver, route)` pairs for an alert; empty when no route matches.
pub fn route(
    routes: &[Route],
    service: &str,
    alert: AlertName,
    severity: &str,
) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (ri, r) in routes.iter().enumerate() {
        let matches = r.service.as_deref().is_none_or(|g| glob_match(g, service))
            && r.alert.is_none_or(|a| a == alert)
            && r.severity.as_deref().is_none_or(|s| s == severity);
        if !matches {
            continue;
        }
        for &rec in &r.receivers {
            if !out.iter().any(|&(x, _)| x == rec) {
                out.push((rec, ri));
            }
        }
        if !r.continue_ {
            break;
        }
    }
    out
}

/// The severity an event carries, or the monitor's default for older events.
pub fn severity_of(marked: Option<&str>, alert: AlertName) -> String {
    marked.map_or_else(
        || {
            if alert == AlertName::ServiceDown {
                "critical".to_owned()
            } else {
                "warning".to_owned()
            }
        },
        str::to_owned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_receivers;

    fn routes(text: &str) -> Vec<Route> {
        let rec = "[[receiver]]\nname=\"a\"\nkind=\"webhook\"\nurl=\"http://h/a\"\n[[receiver]]\nname=\"b\"\nkind=\"slack\"\nurl=\"http://h/b\"\n";
        parse_receivers(&format!("{rec}{text}"), |_| None)
            .unwrap()
            .routes
    }

    #[test]
    fn first_match_wins_unless_continue() {
        let r = routes(
            "[[route]]\nreceivers=[\"a\"]\nservice=\"bill*\"\n[[route]]\nreceivers=[\"b\"]\n",
        );
        assert_eq!(
            route(&r, "billing", AlertName::HighCpu, "warning"),
            vec![(0, 0)]
        );
        assert_eq!(
            route(&r, "auth", AlertName::HighCpu, "warning"),
            vec![(1, 1)]
        );
        let r = routes(
            "[[route]]\nreceivers=[\"a\"]\nseverity=\"critical\"\ncontinue=true\n[[route]]\nreceivers=[\"a\",\"b\"]\n",
        );
        assert_eq!(
            route(&r, "auth", AlertName::ServiceDown, "critical"),
            vec![(0, 0), (1, 1)],
            "a receiver reached twice is served once, by its first route"
        );
        assert_eq!(
            route(&r, "auth", AlertName::HighCpu, "warning"),
            vec![(0, 1), (1, 1)]
        );
    }

    #[test]
    fn nothing_matches_nothing_is_routed() {
        let r = routes("[[route]]\nreceivers=[\"a\"]\nalert=\"SERVICE_DOWN\"\n");
        assert!(route(&r, "auth", AlertName::HighCpu, "warning").is_empty());
        assert_eq!(
            route(&r, "auth", AlertName::ServiceDown, "critical"),
            vec![(0, 0)]
        );
    }

    #[test]
    fn default_severity_follows_the_monitor() {
        assert_eq!(severity_of(None, AlertName::ServiceDown), "critical");
        assert_eq!(severity_of(None, AlertName::HighCpu), "warning");
        assert_eq!(severity_of(Some("page"), AlertName::HighCpu), "page");
    }
}
