//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas can run and only one
//! reconciles. The holder renews the Lease well within its duration; another replica takes it only once it has
//! expired. Writes use the Lease's resourceVersion, so two candidates cannot both win a race.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::Duration;

/// Who competes for which Lease.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder's claim lasts without renewal.
    pub duration: Duration,
}

/// Whether `identity` may take or keep `lease` at `now`.
pub fn may_hold(lease: Option<&Lease>, identity: &str, now: Timestamp) -> bool {
    let Some(spec) = lease.and_then(|lease| lease.spec.as_ref()) else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            spec.renew_time
                .as_ref()
                .is_none_or(|renewed| renewed.0 + SignedDuration::from_secs(seconds) < now)
        }
    }
}

/// Takes or renews the Lease; `Ok(true)` when this replica holds it now.
pub async fn try_hold(client: &Client, settings: &LeaseSettings) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let now = Timestamp::now();
    let current = api.get_opt(&settings.name).await?;
    if !may_hold(current.as_ref(), &settings.identity, now) {
        return Ok(false);
    }
    let previous = current
        .as_ref()
        .and_then(|lease| lease.spec.clone())
        .unwrap_or_default();
    let taking_over = previous.holder_identity.as_deref() != Some(settings.identity.as_str());
    let spec = LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(settings.duration.as_secs()).unwrap_or(15)),
        renew_time: Some(MicroTime(now)),
        acquire_time: if taking_over {
            Some(MicroTime(now))
        } else {
            previous.acquire_time.clone()
        },
        lease_transitions: Some(
            previous.lease_transitions.unwrap_or(0)
                + i32::from(taking_over && previous.holder_identity.is_some()),
        ),
        ..LeaseSpec::default()
    };
    let written = match current {
        Some(mut lease) => {
            lease.spec = Some(spec);
            // The resourceVersion read above makes this a compare-and-swap.
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_kept_by_its_holder_and_taken_over_only_after_expiry() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert!(may_hold(None, "a", now));
        assert!(may_hold(Some(&lease("a", now)), "a", now));
        assert!(!may_hold(
            Some(&lease("a", now)),
            "b",
            now + SignedDuration::from_secs(10)
        ));
        assert!(may_hold(
            Some(&lease("a", now)),
            "b",
            now + SignedDuration::from_secs(16)
        ));
    }

    #[tokio::test]
    async fn of_two_replicas_one_leads_and_renews_and_the_other_waits() {
        let (client, fake) = crate::reconcile::fake_api::FakeApi::start();
        let settings = |identity: &str| LeaseSettings {
            name: "food-delivery-operator".into(),
            namespace: "ops".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        };
        assert!(
            try_hold(&client, &settings("a")).await.unwrap(),
            "a free Lease is taken"
        );
        assert!(
            !try_hold(&client, &settings("b")).await.unwrap(),
            "a held one is not"
        );
        assert!(
            try_hold(&client, &settings("a")).await.unwrap(),
            "the holder renews"
        );
        let leases = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
        let stored = fake.get(leases, "food-delivery-operator").unwrap();
        assert_eq!(stored["spec"]["holderIdentity"], "a");
        // The holder stops renewing: once the Lease expires, the other replica takes over.
        fake.edit(leases, "food-delivery-operator", |lease| {
            lease["spec"]["renewTime"] = serde_json::json!("2020-01-01T00:00:00.000000Z");
        });
        assert!(try_hold(&client, &settings("b")).await.unwrap());
        let stored = fake.get(leases, "food-delivery-operator").unwrap();
        assert_eq!(stored["spec"]["holderIdentity"], "b");
        assert_eq!(stored["spec"]["leaseTransitions"], 1);
        assert!(
            !try_hold(&client, &settings("a")).await.unwrap(),
            "and keeps it"
        );
    }
}
