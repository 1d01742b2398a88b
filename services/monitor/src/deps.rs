//! `depends_on` from the rules file: which services each service needs, checked for
//! cycles at start, and the inhibition rule over it. Pure.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use vitals_protocol::ServiceName;

/// Each service's direct dependencies (a dependency may name a service not yet seen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    of: HashMap<String, Vec<ServiceName>>,
    /// Longest chain of dependencies below each service (0: depends on nothing).
    depth: HashMap<String, u32>,
}

impl Dependencies {
    /// Refuses a cycle (a self-dependency is one), naming it: `a -> b -> a`.
    pub fn new(map: BTreeMap<ServiceName, Vec<ServiceName>>) -> Result<Self, String> {
        let mut of: HashMap<String, Vec<ServiceName>> = HashMap::new();
        for (service, mut deps) in map {
            deps.sort();
            deps.dedup();
            if !deps.is_empty() {
                of.insert(service.to_string(), deps);
            }
        }
        let mut this = Self {
            of,
            depth: HashMap::new(),
        };
        if let Some(cycle) = this.find_cycle() {
            return Err(format!("depends_on has a cycle: {}", cycle.join(" -> ")));
        }
        let names: BTreeSet<String> = this.of.keys().cloned().collect();
        for name in names {
            this.compute_depth(&name);
        }
        Ok(this)
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }

    /// The direct dependencies of `service`.
    pub fn of(&self, service: &str) -> &[ServiceName] {
        self.of.get(service).map_or(&[], Vec::as_slice)
    }

    /// How many links the longest chain below `service` has: services going DOWN together
    /// are judged in this order, so a root is DOWN before its dependants fire.
    pub fn depth(&self, service: &str) -> u32 {
        self.depth.get(service).copied().unwrap_or(0)
    }

    /// The service that explains an alert of `service`: a DOWN ancestor that itself has no
    /// DOWN ancestor, the nearest by breadth-first search (ties by name). None if no
    /// ancestor is DOWN.
    pub fn root_down(&self, service: &str, down: &HashSet<String>) -> Option<ServiceName> {
        if down.is_empty() || !self.of.contains_key(service) {
            return None;
        }
        let mut seen: HashSet<&str> = HashSet::from([service]);
        let mut level: Vec<&ServiceName> = self.of(service).iter().collect();
        while !level.is_empty() {
            for n in &level {
                if down.contains(n.as_str()) && !self.any_down_above(n.as_str(), down) {
                    return Some((*n).clone());
                }
            }
            let mut next: Vec<&ServiceName> = Vec::new();
            for n in &level {
                seen.insert(n.as_str());
            }
            for n in level {
                for d in self.of(n.as_str()) {
                    if !seen.contains(d.as_str()) {
                        next.push(d);
                    }
                }
            }
            next.sort();
            next.dedup();
            level = next;
        }
        None
    }

    fn any_down_above(&self, service: &str, down: &HashSet<String>) -> bool {
        let mut stack: Vec<&str> = vec![service];
        let mut seen: HashSet<&str> = HashSet::new();
        while let Some(s) = stack.pop() {
            for d in self.of(s) {
                if down.contains(d.as_str()) {
                    return true;
                }
                if seen.insert(d.as_str()) {
                    stack.push(d.as_str());
                }
            }
        }
        false
    }

    /// Depth-first, in name order, so the cycle reported is the same every time.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            deps: &'a Dependencies,
            n: &'a str,
            marks: &mut HashMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            match marks.get(n) {
                Some(Mark::Done) => return None,
                Some(Mark::Open) => {
                    let from = path.iter().position(|p| *p == n).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| (*s).to_owned()).collect();
                    cycle.push(n.to_owned());
                    return Some(cycle);
                }
                None => {}
            }
            marks.insert(n, Mark::Open);
            path.push(n);
            for d in deps.of(n) {
                if let Some(c) = visit(deps, d.as_str(), marks, path) {
                    return Some(c);
                }
            }
            path.pop();
            marks.insert(n, Mark::Done);
            None
        }
        let mut names: Vec<&str> = self.of.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut marks = HashMap::new();
        for n in names {
            if let Some(c) = visit(self, n, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
        None
    }

    fn compute_depth(&mut self, service: &str) -> u32 {
        if let Some(&d) = self.depth.get(service) {
            return d;
        }
        // Acyclic (checked first), so the recursion ends.
        let deps: Vec<String> = self.of(service).iter().map(|d| d.to_string()).collect();
        let d = deps
            .iter()
            .map(|d| self.compute_depth(d) + 1)
            .max()
            .unwrap_or(0);
        self.depth.insert(service.to_owned(), d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    fn deps(pairs: &[(&str, &[&str])]) -> Result<Dependencies, String> {
        Dependencies::new(
            pairs
                .iter()
                .map(|(s, d)| (name(s), d.iter().map(|d| name(d)).collect()))
                .collect(),
        )
    }

    fn down(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cycles_are_refused_naming_the_cycle() {
        let e = deps(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]).unwrap_err();
        assert_eq!(e, "depends_on has a cycle: a -> b -> c -> a");
        let e = deps(&[("a", &["a"])]).unwrap_err();
        assert_eq!(e, "depends_on has a cycle: a -> a");
        let e = deps(&[("x", &["y"]), ("y", &["z", "x"])]).unwrap_err();
        assert_eq!(e, "depends_on has a cycle: x -> y -> x");
        assert!(deps(&[("a", &["b"]), ("c", &["b"]), ("b", &["z"])]).is_ok());
    }

    #[test]
    fn depth_orders_roots_first() {
        let d = deps(&[("c", &["b"]), ("b", &["a"]), ("x", &["a", "c"])]).unwrap();
        assert_eq!(
            ["a", "b", "c", "x", "other"].map(|s| d.depth(s)),
            [0, 1, 2, 3, 0]
        );
    }

    #[test]
    fn the_root_is_the_nearest_down_ancestor_with_nothing_down_above_it() {
        // chain a <- b <- c
        let d = deps(&[("c", &["b"]), ("b", &["a"])]).unwrap();
        assert_eq!(d.root_down("c", &down(&["b"])), Some(name("b")));
        assert_eq!(d.root_down("c", &down(&["a", "b"])), Some(name("a")));
        assert_eq!(d.root_down("c", &down(&["a"])), Some(name("a")));
        assert_eq!(d.root_down("c", &down(&["c"])), None, "not its own root");
        assert_eq!(d.root_down("a", &down(&["b", "c"])), None);
        assert_eq!(d.root_down("c", &down(&[])), None);
        // diamond: d depends on b and c, both depend on a
        let g = deps(&[("d", &["c", "b"]), ("b", &["a"]), ("c", &["a"])]).unwrap();
        assert_eq!(g.root_down("d", &down(&["a", "b", "c"])), Some(name("a")));
        assert_eq!(
            g.root_down("d", &down(&["b", "c"])),
            Some(name("b")),
            "ties by name"
        );
        assert_eq!(g.root_down("d", &down(&["c"])), Some(name("c")));
    }
}
