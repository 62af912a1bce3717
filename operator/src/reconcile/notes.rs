//! What an Event says, within what the API server accepts: an events.k8s.io/v1 note of more than 1,024 bytes is
//! refused, and the Event is then lost. Pure.

use std::collections::BTreeMap;

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
