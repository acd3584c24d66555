//! Response context tests: forwarding rules, CANCEL decisions, the best-response table.

use super::*;
use crate::testutil::req;

fn resp(code: u16, extra: &[(&str, &str)]) -> Message {
    let mut m = req("INVITE", "z9hG4bKup", "").reply(code, "", Some("callee"));
    for (n, v) in extra {
        m.headers.push(*n, *v);
    }
    m
}

const OPTS: FinalOptions = FinalOptions {
    remap_503_500: true,
    aggregate_challenges: true,
};

fn local(code: u16) -> Message {
    req("INVITE", "z9hG4bKup", "").reply(code, "", Some("local"))
}

/// A context with `n` branches, each given the final in `codes` (in order).
fn finals(codes: &[u16]) -> (ResponseContext, Vec<CtxAction>) {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in codes {
        c.add_branch().unwrap();
    }
    let mut last = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        last = c.on_response(i, resp(*code, &[]));
    }
    (c, last)
}

fn final_code(acts: &[CtxAction], c: &ResponseContext) -> Option<u16> {
    acts.iter().find_map(|a| match a {
        CtxAction::Final(w) => c.final_response(w, OPTS, local).status(),
        _ => None,
    })
}

#[test]
fn priority_table_is_kamailios() {
    let order = [
        200, 202, 600, 603, 300, 302, 401, 407, 415, 420, 484, 400, 404, 408, 480, 486, 487, 500,
        503, 180,
    ];
    for w in order.windows(2) {
        assert!(
            priority(w[0]) < priority(w[1]),
            "{} should beat {}",
            w[0],
            w[1]
        );
    }
    assert_eq!(priority(401), 4001);
    assert_eq!(priority(404), 4104);
    assert_eq!(priority(603), 1003);
}

#[test]
fn best_final_waits_for_all_branches() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..3 {
        c.add_branch().unwrap();
    }
    let a = c.on_response(0, resp(486, &[]));
    assert_eq!(
        a,
        [CtxAction::BranchFailure {
            branch: 0,
            code: 486,
            timeout: false
        }]
    );
    assert!(c
        .on_response(1, resp(503, &[]))
        .iter()
        .all(|a| !matches!(a, CtxAction::Final(_))));
    let a = c.on_response(2, resp(404, &[]));
    assert_eq!(final_code(&a, &c), Some(404), "404 beats 486 and 503");
    assert_eq!(c.answered(), Some(404));
}

#[test]
fn best_response_picks() {
    for (codes, want) in [
        (&[404, 484][..], 484),
        (&[404, 302][..], 302),
        (&[302, 600][..], 600),
        (&[500, 486][..], 486),
        (&[408, 480, 404][..], 404),
        (&[486, 486][..], 486),
    ] {
        let (c, acts) = finals(codes);
        assert_eq!(final_code(&acts, &c), Some(want), "{codes:?}");
    }
    // Ties: the first branch wins.
    let (c, _) = finals(&[486, 486]);
    assert_eq!(c.winner(), Winner::Branch(0));
}

#[test]
fn a_winning_503_goes_up_as_500() {
    let (c, acts) = finals(&[503]);
    let w = acts
        .iter()
        .find_map(|a| match a {
            CtxAction::Final(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    let m = c.final_response(&w, OPTS, local);
    assert_eq!(m.status(), Some(500));
    assert_eq!(m.start.to_string(), "SIP/2.0 500 Server Internal Error");
    let keep = FinalOptions {
        remap_503_500: false,
        ..OPTS
    };
    assert_eq!(c.final_response(&w, keep, local).status(), Some(503));
}

#[test]
fn challenges_are_aggregated_into_the_winner() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..3 {
        c.add_branch().unwrap();
    }
    c.on_response(
        0,
        resp(407, &[("Proxy-Authenticate", "Digest realm=\"a\"")]),
    );
    c.on_response(
        1,
        resp(404, &[("WWW-Authenticate", "Digest realm=\"ignored\"")]),
    );
    let acts = c.on_response(
        2,
        resp(
            401,
            &[
                ("WWW-Authenticate", "Digest realm=\"b\""),
                ("WWW-Authenticate", "Digest realm=\"c\""),
            ],
        ),
    );
    let w = match acts.last() {
        Some(CtxAction::Final(w)) => w.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(w, Winner::Branch(2), "401 ranks ahead of 407");
    let m = c.final_response(&w, OPTS, local);
    assert_eq!(m.status(), Some(401));
    let www: Vec<_> = m.headers.get_all("WWW-Authenticate").collect();
    assert_eq!(www, ["Digest realm=\"b\"", "Digest realm=\"c\""]);
    let proxy: Vec<_> = m.headers.get_all("Proxy-Authenticate").collect();
    assert_eq!(proxy, ["Digest realm=\"a\""]);
    let off = FinalOptions {
        aggregate_challenges: false,
        ..OPTS
    };
    assert!(!c
        .final_response(&w, off, local)
        .headers
        .contains("Proxy-Authenticate"));
}

#[test]
fn provisionals_go_up_except_100() {
    let mut c = ResponseContext::new(true, 12, false);
    c.add_branch().unwrap();
    assert!(c.on_response(0, resp(100, &[])).is_empty());
    assert!(
        matches!(&c.on_response(0, resp(180, &[]))[..], [CtxAction::Forward(m)] if m.status() == Some(180))
    );
    let mut relay = ResponseContext::new(true, 12, true);
    relay.add_branch().unwrap();
    assert_eq!(relay.on_response(0, resp(100, &[])).len(), 1, "relay_100=1");
}

#[test]
fn a_2xx_goes_up_at_once_and_cancels_siblings() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..3 {
        c.add_branch().unwrap();
    }
    assert_eq!(c.provisional_seen(1, 180), None);
    let acts = c.on_response(0, resp(200, &[]));
    assert_eq!(
        acts,
        [
            CtxAction::Cancel {
                branch: 1,
                reason: Some(COMPLETED.into())
            },
            CtxAction::Forward(resp(200, &[]).into()),
        ]
    );
    // Branch 2 had no provisional: its CANCEL waits for one.
    assert_eq!(
        c.provisional_seen(2, 183),
        Some(CtxAction::Cancel {
            branch: 2,
            reason: Some(COMPLETED.into())
        })
    );
    // A second 2xx also goes up (§16.7 step 5); the 487s are absorbed.
    assert_eq!(
        c.on_response(1, resp(487, &[])).len(),
        1,
        "only the branch failure"
    );
    assert!(matches!(
        &c.on_response(2, resp(200, &[]))[..],
        [CtxAction::Forward(_)]
    ));
    assert_eq!(c.answered(), Some(200));
}

const COMPLETED: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

#[test]
fn a_6xx_cancels_siblings_blocks_forking_and_wins() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..2 {
        c.add_branch().unwrap();
    }
    c.provisional_seen(1, 180);
    let acts = c.on_response(0, resp(603, &[]));
    assert!(acts.contains(&CtxAction::Cancel {
        branch: 1,
        reason: Some("SIP;cause=603".into())
    }));
    assert!(matches!(c.add_branch(), Err(Error::ForkingBlocked)));
    let acts = c.on_response(1, resp(487, &[]));
    assert_eq!(final_code(&acts, &c), Some(603));
}

#[test]
fn timeouts_are_local_408_and_cancel_branches_with_a_provisional() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..2 {
        c.add_branch().unwrap();
    }
    c.provisional_seen(0, 180);
    let a = c.on_timeout(0);
    assert_eq!(
        a,
        [
            CtxAction::Cancel {
                branch: 0,
                reason: None
            },
            CtxAction::BranchFailure {
                branch: 0,
                code: 408,
                timeout: true
            }
        ]
    );
    let a = c.on_timeout(1);
    assert_eq!(a.last(), Some(&CtxAction::Final(Winner::Branch(0))));
    let m = c.final_response(&Winner::Branch(0), OPTS, local);
    assert_eq!(m.status(), Some(408));
    assert_eq!(m.to_tag().as_deref(), Some("local"));
}

#[test]
fn cancel_without_pending_branches_answers_487() {
    let mut c = ResponseContext::new(true, 12, false);
    assert_eq!(c.cancel(None), [CtxAction::Final(Winner::Local(487))]);
    assert!(c.is_cancelled());
    assert!(matches!(c.add_branch(), Err(Error::Completed)));
}

#[test]
fn cancel_marks_unreplied_branches_for_later() {
    let mut c = ResponseContext::new(true, 12, false);
    for _ in 0..2 {
        c.add_branch().unwrap();
    }
    c.provisional_seen(0, 180);
    let r = Some("Q.850;cause=16".to_string());
    assert_eq!(
        c.cancel(r.clone()),
        [CtxAction::Cancel {
            branch: 0,
            reason: r.clone()
        }]
    );
    assert_eq!(
        c.provisional_seen(1, 100),
        Some(CtxAction::Cancel {
            branch: 1,
            reason: r
        })
    );
    // A timeout after the CANCEL counts as 487.
    c.on_response(0, resp(487, &[]));
    let mut c2 = ResponseContext::new(true, 12, false);
    c2.add_branch().unwrap();
    c2.cancel(None);
    let a = c2.on_timeout(0);
    assert!(a.contains(&CtxAction::BranchFailure {
        branch: 0,
        code: 487,
        timeout: true
    }));
    assert_eq!(final_code(&a, &c2), Some(487));
}

#[test]
fn failure_hook_starts_a_new_serial_leg() {
    let mut c = ResponseContext::new(true, 12, false);
    c.arm_failure();
    c.add_branch().unwrap();
    let a = c.on_response(0, resp(302, &[]));
    assert_eq!(a.last(), Some(&CtxAction::AwaitFailure { code: 302 }));
    assert!(c.is_awaiting_failure());
    assert_eq!(c.answered(), None);
    // New leg: only its replies compete (failure_reply_mode=3), so 486 beats the 302.
    assert_eq!(c.add_branch().unwrap(), 1);
    let a = c.on_response(1, resp(486, &[]));
    assert_eq!(
        final_code(&a, &c),
        Some(486),
        "hook not re-armed: final goes up"
    );
}

#[test]
fn failure_hook_fires_again_when_re_armed_and_finish_relays_best() {
    let mut c = ResponseContext::new(false, 12, false);
    c.arm_failure();
    c.add_branch().unwrap();
    c.on_response(0, resp(480, &[]));
    c.arm_failure();
    c.add_branch().unwrap();
    let a = c.on_response(1, resp(404, &[]));
    assert_eq!(a.last(), Some(&CtxAction::AwaitFailure { code: 404 }));
    let a = c.finish();
    assert_eq!(a, [CtxAction::Final(Winner::Branch(1))]);
    assert!(c.finish().is_empty());
}

#[test]
fn branch_limit_and_non_invite_single_final() {
    let mut c = ResponseContext::new(false, 2, false);
    c.add_branch().unwrap();
    c.add_branch().unwrap();
    assert!(matches!(
        c.add_branch(),
        Err(Error::TooManyBranches { max: 2 })
    ));
    assert_eq!(c.on_response(0, resp(200, &[])).len(), 1);
    assert!(
        c.on_response(1, resp(200, &[])).is_empty(),
        "one final for non-INVITE"
    );
}
