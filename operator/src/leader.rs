//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas can run and only one
//! reconciles. The holder renews the Lease well within its duration; another replica takes it only once it has
//! expired. Writes use the Lease's resourceVersion, so two candidates cannot both win a race.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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

/// Whether `identity` may take or keep `lease`, given how long this replica has seen it unchanged (its own clock: a
/// holder's renewTime comes from another node's clock, which may be off by more than the Lease lasts).
pub fn may_hold(lease: Option<&Lease>, identity: &str, unchanged_for: Duration) -> bool {
    let Some(spec) = lease.and_then(|lease| lease.spec.as_ref()) else {
        return true;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => {
            let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15);
            unchanged_for > Duration::from_secs(seconds)
        }
    }
}

/// One replica's part in the election: what it last saw of the Lease and since when, so expiry is judged by how
/// long the Lease has not changed on this replica's own clock.
#[derive(Debug)]
pub struct Elector {
    settings: LeaseSettings,
    /// The Lease's resourceVersion when last read, and when it was first seen at that version.
    observed: Option<(String, std::time::Instant)>,
}

impl Elector {
    /// An elector for `settings`.
    pub fn new(settings: LeaseSettings) -> Self {
        Self {
            settings,
            observed: None,
        }
    }

    /// The Lease settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Takes or renews the Lease; `Ok(true)` when this replica holds it now.
    pub async fn try_hold(&mut self, client: &Client) -> Result<bool, kube::Error> {
        let settings = &self.settings;
        let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
        let current = api.get_opt(&settings.name).await?;
        let version = current
            .as_ref()
            .and_then(|lease| lease.metadata.resource_version.clone())
            .unwrap_or_default();
        let seen_since = match &self.observed {
            Some((seen, since)) if *seen == version => *since,
            _ => {
                let now = std::time::Instant::now();
                self.observed = Some((version, now));
                now
            }
        };
        if !may_hold(current.as_ref(), &settings.identity, seen_since.elapsed()) {
            return Ok(false);
        }
        let now = Timestamp::now();
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
                    + i32::from(
                        taking_over
                            && previous
                                .holder_identity
                                .as_deref()
                                .is_some_and(|holder| !holder.is_empty()),
                    ),
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

    /// Whether the Lease is now held by another replica (not merely changed under this one). An error counts as
    /// "not known to be lost": the renew deadline decides then.
    pub async fn holder_is_other(&self, client: &Client) -> bool {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.settings.namespace);
        match api.get_opt(&self.settings.name).await {
            Ok(lease) => lease
                .and_then(|lease| lease.spec)
                .and_then(|spec| spec.holder_identity)
                .is_some_and(|holder| !holder.is_empty() && holder != self.settings.identity),
            Err(_) => false,
        }
    }

    /// Gives the Lease up (at shutdown), so a standby leads at once instead of after the Lease's duration. Only
    /// when this replica still holds it; the resourceVersion makes it a compare-and-swap.
    pub async fn release(&self, client: &Client) -> Result<(), kube::Error> {
        let settings = &self.settings;
        let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
        let Some(mut lease) = api.get_opt(&settings.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        spec.lease_duration_seconds = Some(1);
        match api
            .replace(&settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_kept_by_its_holder_and_taken_over_only_after_it_stood_still() {
        let seconds = Duration::from_secs;
        assert!(may_hold(None, "a", seconds(0)));
        assert!(may_hold(Some(&lease("a")), "a", seconds(0)));
        assert!(!may_hold(Some(&lease("a")), "b", seconds(10)));
        assert!(may_hold(Some(&lease("a")), "b", seconds(16)));
        assert!(may_hold(Some(&lease("")), "b", seconds(0)), "released");
    }

    #[tokio::test]
    async fn of_two_replicas_one_leads_and_renews_and_the_other_waits() {
        let (client, fake) = crate::reconcile::fake_api::FakeApi::start();
        let elector = |identity: &str| {
            Elector::new(LeaseSettings {
                name: "food-delivery-operator".into(),
                namespace: "ops".into(),
                identity: identity.into(),
                duration: Duration::from_secs(1),
            })
        };
        let (mut a, mut b) = (elector("a"), elector("b"));
        assert!(a.try_hold(&client).await.unwrap(), "a free Lease is taken");
        assert!(!b.try_hold(&client).await.unwrap(), "a held one is not");
        assert!(a.try_hold(&client).await.unwrap(), "the holder renews");
        let leases = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
        let stored = fake.get(leases, "food-delivery-operator").unwrap();
        assert_eq!(stored["spec"]["holderIdentity"], "a");
        // A renewTime from a clock far off (here: years in the past) does not make the Lease expired: only seeing
        // it unchanged for its duration does.
        fake.edit(leases, "food-delivery-operator", |lease| {
            lease["spec"]["renewTime"] = serde_json::json!("2020-01-01T00:00:00.000000Z");
        });
        assert!(
            !b.try_hold(&client).await.unwrap(),
            "another node's clock is not trusted"
        );
        // The holder stops renewing: once this replica has seen it unchanged for longer than its duration, the
        // other replica takes over.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(b.try_hold(&client).await.unwrap());
        let stored = fake.get(leases, "food-delivery-operator").unwrap();
        assert_eq!(stored["spec"]["holderIdentity"], "b");
        assert_eq!(stored["spec"]["leaseTransitions"], 1);
        assert!(!a.try_hold(&client).await.unwrap(), "and keeps it");
        // A holder that shuts down gives the Lease up: the standby takes it at once.
        b.release(&client).await.unwrap();
        assert!(
            a.try_hold(&client).await.unwrap(),
            "released, so taken without waiting"
        );
    }
}
