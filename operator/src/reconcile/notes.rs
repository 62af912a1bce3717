//! What an Event says, within what the API server accepts: an events.k8s.io/v1 note of more than 1,024 bytes is
//! refused, and the Event is then lost. Pure.

use super::status::Reason;
use std::collections::BTreeMap;

/// Tally of one reconcile's writes, for Events and metrics.
#[derive(Debug, Default)]
pub struct Changes {
    /// Objects created.
    pub created: Vec<String>,
    /// Objects updated (spec change or drift healed).
    pub updated: Vec<String>,
    /// Objects deleted.
    pub pruned: Vec<String>,
    /// Objects the server refused for good, with its message.
    pub refused: Vec<String>,
}

/// The Events a reconcile's `changes` make, by reason. Children written while the spec did not change had been
/// edited or deleted by someone else: a heal, whether the server created or updated them.
pub fn change_reports(changes: &Changes, spec_unchanged: bool) -> Vec<(Reason, Vec<String>)> {
    if spec_unchanged {
        vec![
            (
                Reason::Healed,
                [changes.created.clone(), changes.updated.clone()].concat(),
            ),
            (Reason::Pruned, changes.pruned.clone()),
        ]
    } else {
        vec![
            (Reason::Created, changes.created.clone()),
            (Reason::Updated, changes.updated.clone()),
            (Reason::Pruned, changes.pruned.clone()),
        ]
    }
}

/// The longest note the API server accepts (events.k8s.io/v1 `note`, in bytes).
pub const MAX_NOTE_BYTES: usize = 1024;

/// A note listing changed objects (`"<Kind> <name>"` each): every name when that fits, otherwise a count per kind
/// (`"8 Deployment, 8 Service, 3 PodDisruptionBudget"`), so the production example's 44 objects still make one
/// accepted Event.
pub fn objects_note(objects: &[String]) -> String {
    let listed = objects.join(", ");
    if listed.len() <= MAX_NOTE_BYTES {
        return listed;
    }
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for object in objects {
        let kind = object
            .split_once(' ')
            .map_or(object.as_str(), |(kind, _)| kind);
        *per_kind.entry(kind).or_default() += 1;
    }
    bounded(
        per_kind
            .into_iter()
            .map(|(kind, count)| format!("{count} {kind}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// `note` cut to what the API server accepts, on a character boundary, marked as cut.
pub fn bounded(note: String) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    const MARK: &str = " …";
    let mut end = MAX_NOTE_BYTES - MARK.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_without_a_spec_change_are_heals_and_with_one_creations_and_updates() {
        let changes = Changes {
            created: vec!["Service shop-order".to_owned()],
            updated: vec!["Deployment shop-order".to_owned()],
            pruned: vec!["Ingress shop-gateway".to_owned()],
            refused: Vec::new(),
        };
        assert_eq!(
            change_reports(&changes, true),
            [
                (
                    Reason::Healed,
                    vec![
                        "Service shop-order".to_owned(),
                        "Deployment shop-order".to_owned()
                    ]
                ),
                (Reason::Pruned, vec!["Ingress shop-gateway".to_owned()]),
            ]
        );
        let reasons: Vec<Reason> = change_reports(&changes, false)
            .into_iter()
            .map(|(reason, _)| reason)
            .collect();
        assert_eq!(reasons, [Reason::Created, Reason::Updated, Reason::Pruned]);
    }

    #[test]
    fn a_short_list_names_every_object() {
        let objects = vec![
            "Deployment shop-order".to_owned(),
            "Service shop-order".to_owned(),
        ];
        assert_eq!(
            objects_note(&objects),
            "Deployment shop-order, Service shop-order"
        );
    }

    #[test]
    fn a_long_list_counts_per_kind_and_fits() {
        let objects: Vec<String> = (0..60)
            .map(|index| {
                let kind = ["Deployment", "Service", "ConfigMap"][index % 3];
                format!("{kind} a-rather-long-application-name-component-{index}")
            })
            .collect();
        assert!(objects.join(", ").len() > MAX_NOTE_BYTES);
        assert_eq!(
            objects_note(&objects),
            "20 ConfigMap, 20 Deployment, 20 Service"
        );
    }

    #[test]
    fn any_note_is_cut_to_what_the_server_accepts_on_a_character_boundary() {
        let long = "é".repeat(800);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(" …"));
        assert_eq!(bounded("short".to_owned()), "short");
    }
}
