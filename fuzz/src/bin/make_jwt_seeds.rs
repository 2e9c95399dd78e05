//! Prints registry tokens signed by the fuzz targets' fixed key, one per
//! line: the seeds of the `jwt` target's corpus (`fuzz/seeds/jwt`), so the
//! fuzzer starts from tokens that verify and mutates its way outward.

use berth_auth::{AccessEntry, Scope};
use berth_fuzz::{jwt_authority, now};

fn main() {
    let authority = jwt_authority();
    let pull = Scope::repository("team-a/api", &["pull"]);
    let push = Scope::repository("team-a/api", &["pull", "push"]);
    let catalog = Scope::catalog();
    let cases: Vec<(Option<&str>, Vec<AccessEntry>)> = vec![
        (None, vec![]),
        (
            Some("alice"),
            vec![AccessEntry::granted(&pull, vec!["pull".into()])],
        ),
        (
            Some("ci-robot"),
            vec![
                AccessEntry::granted(&push, vec!["pull".into(), "push".into()]),
                AccessEntry::granted(&catalog, vec!["*".into()]),
            ],
        ),
    ];
    for (subject, access) in cases {
        let issued = authority
            .issue(subject, access, now(), None)
            .expect("the fixed key signs");
        println!("{}", issued.token.expose());
    }
}
