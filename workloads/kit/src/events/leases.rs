//! Which member of a consumer group reads which partition, and where it resumes, kept in the group's own store.
//!
//! Why not the broker's group coordinator: on tansu 0.6 (the broker CI runs) a member that dies without leaving
//! (kill -9, a lost node) is expired without a rebalance, so its partitions are never handed to anyone; a
//! member that rejoins under a new id can leave the group with a leader that is no longer a member, and every
//! later rebalance fails (docs/architecture.md). A saga that stops after a crash is not acceptable on any broker,
//! and the store is already the one place every replica of a service shares. So each partition is a lease row:
//! its holder, the lease's expiry (database clock), and the next offset to read. Members heartbeat a row of
//! their own and take a fair share of the partitions each round; a member that leaves releases its leases at
//! once, a member that dies loses them when they expire.
//!
//! The position moves in the same transaction as the effect and the inbox mark, and only while the member holds
//! the lease, so a member that lost its partition (paused, cut off, too slow to renew) can never apply an event
//! after the new holder started: its transaction finds another holder and rolls back. Kafka only carries the
//! messages; its group offsets are read once, for a partition the store has no position for yet (an upgrade
//! from broker-coordinated groups).

use crate::store::{Backend, Store, StoreTransaction};
use std::time::Duration;

/// How long a lease lasts without renewal: the longest a crashed member's partitions wait for another member.
pub const LEASE: Duration = Duration::from_secs(8);
/// How often a member renews its leases and rebalances: also how long a graceful hand-over takes at most.
pub const ROUND: Duration = Duration::from_secs(1);

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// A partition's lease as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Which partition.
    pub key: PartitionKey,
    /// Who holds it (`None`: released).
    pub holder: Option<String>,
    /// Until when (database clock, ms since the epoch).
    pub expires_at: i64,
    /// The next offset to read (`-1`: none recorded yet).
    pub next_offset: i64,
}

/// What a member does with the leases this round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Leases it holds beyond its share: given back so another member can take them.
    pub release: Vec<PartitionKey>,
    /// Free or expired leases it takes, up to its share.
    pub claim: Vec<PartitionKey>,
}

/// Decides what `member` releases and claims, given every partition's lease, the live members (sorted, `member`
/// among them) and the database's clock. Each member's share is the partitions divided by the members, the first
/// members in id order taking one more when it does not divide evenly, so the shares add up to every partition.
pub fn plan(rows: &[LeaseRow], member: &str, members: &[String], now: i64) -> LeasePlan {
    let count = members.len().max(1);
    let position = members
        .iter()
        .position(|live| live == member)
        .unwrap_or(count - 1);
    let share = rows.len() / count + usize::from(position < rows.len() % count);
    let mut held: Vec<&PartitionKey> = rows
        .iter()
        .filter(|row| row.holder.as_deref() == Some(member))
        .map(|row| &row.key)
        .collect();
    held.sort();
    if held.len() > share {
        return LeasePlan {
            release: held[share..].iter().map(|key| (*key).clone()).collect(),
            claim: Vec::new(),
        };
    }
    let mut free: Vec<&PartitionKey> = rows
        .iter()
        .filter(|row| row.holder.is_none() || row.expires_at < now)
        .filter(|row| row.holder.as_deref() != Some(member))
        .map(|row| &row.key)
        .collect();
    free.sort();
    LeasePlan {
        release: Vec::new(),
        claim: free.into_iter().take(share - held.len()).cloned().collect(),
    }
}

/// The database's clock in milliseconds, as SQL: every replica judges expiry by the same clock.
fn database_now(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
    }
}

fn lease_millis() -> i64 {
    i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

/// Partitions a member holds, each with where to resume (`None`: no position recorded yet).
pub type HeldPartitions = Vec<(PartitionKey, Option<i64>)>;

/// What a member holds after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRound {
    /// The partitions it holds, sorted.
    pub held: HeldPartitions,
    /// Live members of the group, this one included.
    pub members: usize,
}

/// One member's leases in one consumer group.
#[derive(Debug, Clone)]
pub struct PartitionLeases {
    store: Store,
    group: String,
    member: String,
}

impl PartitionLeases {
    /// Member `member` (unique per process start) of `group`.
    pub fn new(store: Store, group: String, member: String) -> Self {
        Self {
            store,
            group,
            member,
        }
    }

    /// This member's id.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// One round: heartbeat, renew, give back what is beyond this member's share, take free leases up to it.
    pub async fn round(&self, partitions: &[PartitionKey]) -> Result<LeaseRound, sqlx::Error> {
        let now_sql = database_now(self.store.backend());
        let pool = self.store.pool();
        // Rows appear once per partition (the first round, or when a topic grows).
        let existing: Vec<PartitionKey> = self
            .rows(partitions)
            .await?
            .into_iter()
            .map(|row| row.key)
            .collect();
        for key in partitions.iter().filter(|key| !existing.contains(key)) {
            sqlx::query(
                "INSERT INTO kit_consumer_leases (consumer_group, topic, partition_number, holder, expires_at, \
                 next_offset) VALUES ($1, $2, $3, NULL, 0, -1) ON CONFLICT DO NOTHING",
            )
            .bind(&self.group)
            .bind(&key.topic)
            .bind(key.partition)
            .execute(pool)
            .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO kit_consumer_members (consumer_group, member, expires_at) VALUES ($1, $2, {now_sql} + $3)
             ON CONFLICT (consumer_group, member) DO UPDATE SET expires_at = excluded.expires_at"
        ))
        .bind(&self.group)
        .bind(&self.member)
        .bind(lease_millis())
        .execute(pool)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM kit_consumer_members WHERE consumer_group = $1 AND member <> $2 AND expires_at < {now_sql}"
        ))
        .bind(&self.group)
        .bind(&self.member)
        .execute(pool)
        .await?;
        sqlx::query(&format!(
            "UPDATE kit_consumer_leases SET expires_at = {now_sql} + $1 WHERE consumer_group = $2 AND holder = $3"
        ))
        .bind(lease_millis())
        .bind(&self.group)
        .bind(&self.member)
        .execute(pool)
        .await?;
        let now: i64 = sqlx::query_scalar(&format!("SELECT {now_sql}"))
            .fetch_one(pool)
            .await?;
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT member FROM kit_consumer_members WHERE consumer_group = $1 ORDER BY member",
        )
        .bind(&self.group)
        .fetch_all(pool)
        .await?;
        let rows = self.rows(partitions).await?;
        let plan = plan(&rows, &self.member, &members, now);
        for key in &plan.release {
            self.release(key).await?;
        }
        for key in &plan.claim {
            sqlx::query(&format!(
                "UPDATE kit_consumer_leases SET holder = $1, expires_at = {now_sql} + $2
                 WHERE consumer_group = $3 AND topic = $4 AND partition_number = $5
                 AND (holder IS NULL OR expires_at < {now_sql})"
            ))
            .bind(&self.member)
            .bind(lease_millis())
            .bind(&self.group)
            .bind(&key.topic)
            .bind(key.partition)
            .execute(pool)
            .await?;
        }
        let held = self
            .rows(partitions)
            .await?
            .into_iter()
            .filter(|row| row.holder.as_deref() == Some(self.member.as_str()))
            .map(|row| (row.key, (row.next_offset >= 0).then_some(row.next_offset)))
            .collect();
        Ok(LeaseRound {
            held,
            members: members.len(),
        })
    }

    async fn rows(&self, partitions: &[PartitionKey]) -> Result<Vec<LeaseRow>, sqlx::Error> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT topic, partition_number, holder, expires_at, next_offset FROM kit_consumer_leases
             WHERE consumer_group = $1 ORDER BY topic, partition_number",
        )
        .bind(&self.group)
        .fetch_all(self.store.pool())
        .await?;
        let mut leases = Vec::with_capacity(rows.len());
        for row in rows {
            let key = PartitionKey {
                topic: row.try_get("topic")?,
                partition: row.try_get("partition_number")?,
            };
            // Partitions of topics this group no longer reads (an older version's) are not shared out.
            if partitions.contains(&key) {
                leases.push(LeaseRow {
                    key,
                    holder: row.try_get("holder")?,
                    expires_at: row.try_get("expires_at")?,
                    next_offset: row.try_get("next_offset")?,
                });
            }
        }
        Ok(leases)
    }

    async fn release(&self, key: &PartitionKey) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE kit_consumer_leases SET holder = NULL, expires_at = 0
             WHERE consumer_group = $1 AND topic = $2 AND partition_number = $3 AND holder = $4",
        )
        .bind(&self.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(&self.member)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Leaves the group at shutdown: every lease and the member row go at once, so the other members take the
    /// partitions on their next round instead of after the leases expire.
    pub async fn leave(&self) -> Result<(), sqlx::Error> {
        // One transaction: a member row left behind would shrink the others' shares until it expired.
        let mut transaction = self.store.begin().await?;
        sqlx::query("DELETE FROM kit_consumer_members WHERE consumer_group = $1 AND member = $2")
            .bind(&self.group)
            .bind(&self.member)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "UPDATE kit_consumer_leases SET holder = NULL, expires_at = 0 WHERE consumer_group = $1 AND holder = $2",
        )
        .bind(&self.group)
        .bind(&self.member)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await
    }

    /// Inside the transaction that applies (or skips) the message at `offset`: the partition resumes after it, if
    /// this member holds the partition and the message is not before the position (offsets may have gaps, so
    /// "after" is all that can be asked). A message before it was applied already. The caller must make sure it
    /// never applies a message after one it read and could not apply ([`Position::Elsewhere`]): the consumer then
    /// reads again from the stored position (events/consumer.rs).
    pub async fn advance(
        &self,
        transaction: &mut StoreTransaction,
        key: &PartitionKey,
        offset: i64,
    ) -> Result<Position, sqlx::Error> {
        if self.advance_past(transaction, key, offset, offset).await? {
            return Ok(Position::Next);
        }
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT next_offset FROM kit_consumer_leases
             WHERE consumer_group = $1 AND topic = $2 AND partition_number = $3 AND holder = $4",
        )
        .bind(&self.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(&self.member)
        .fetch_optional(&mut **transaction)
        .await?;
        Ok(match next {
            Some(next) if next > offset => Position::AlreadyApplied,
            _ => Position::Elsewhere,
        })
    }
}

impl PartitionLeases {
    /// [`Self::advance`] for several messages of one partition, `first` to `last` (offsets increasing), in one
    /// statement: when `first` is the next message, the position moves past `last` and every one of them is
    /// [`Position::Next`] (as advancing one by one would have found). `false` changes nothing; the caller then
    /// asks message by message.
    pub async fn advance_past(
        &self,
        transaction: &mut StoreTransaction,
        key: &PartitionKey,
        first: i64,
        last: i64,
    ) -> Result<bool, sqlx::Error> {
        let moved = sqlx::query(
            "UPDATE kit_consumer_leases SET next_offset = $1
             WHERE consumer_group = $2 AND topic = $3 AND partition_number = $4 AND holder = $5
             AND next_offset <= $6",
        )
        .bind(last + 1)
        .bind(&self.group)
        .bind(&key.topic)
        .bind(key.partition)
        .bind(&self.member)
        .bind(first)
        .execute(&mut **transaction)
        .await?;
        Ok(moved.rows_affected() == 1)
    }
}

/// Where a message stands against its partition's position in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The next message to apply: the position moved past it in the caller's transaction.
    Next,
    /// The position is past it: applied before (a re-read after a re-assignment).
    AlreadyApplied,
    /// This member does not hold the partition: whoever does reads it from the stored position.
    Elsewhere,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: i32) -> PartitionKey {
        PartitionKey {
            topic: "t".to_owned(),
            partition,
        }
    }

    fn row(partition: i32, holder: Option<&str>, expires_at: i64) -> LeaseRow {
        LeaseRow {
            key: key(partition),
            holder: holder.map(str::to_owned),
            expires_at,
            next_offset: -1,
        }
    }

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_lone_member_takes_every_partition() {
        let rows = [row(0, None, 0), row(1, None, 0), row(2, None, 0)];
        let plan = plan(&rows, "a", &members(&["a"]), 100);
        assert_eq!(plan.claim, [key(0), key(1), key(2)]);
    }

    #[test]
    fn a_member_holding_more_than_its_share_gives_the_rest_back_when_another_joins() {
        let rows = [
            row(0, Some("a"), 200),
            row(1, Some("a"), 200),
            row(2, Some("a"), 200),
        ];
        let everyone = members(&["a", "b"]);
        // Three partitions over two members: the first takes two, the second one.
        assert_eq!(plan(&rows, "a", &everyone, 100).release, [key(2)]);
        assert_eq!(plan(&rows, "b", &everyone, 100), LeasePlan::default());
        let after = [
            row(0, Some("a"), 200),
            row(1, Some("a"), 200),
            row(2, None, 0),
        ];
        assert_eq!(plan(&after, "b", &everyone, 100).claim, [key(2)]);
    }

    #[test]
    fn the_leases_of_a_member_that_stopped_renewing_are_taken_once_they_expire() {
        let rows = [row(0, Some("dead"), 90), row(1, Some("dead"), 90)];
        assert_eq!(
            plan(&rows, "b", &members(&["b"]), 100).claim,
            [key(0), key(1)]
        );
        assert_eq!(
            plan(&rows, "b", &members(&["b"]), 80),
            LeasePlan::default(),
            "not before they expire"
        );
    }

    #[test]
    fn shares_add_up_to_every_partition_for_any_number_of_members() {
        for partitions in 0..12 {
            for count in 1..6 {
                let names: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
                let mut rows: Vec<LeaseRow> = (0..partitions).map(|p| row(p, None, 0)).collect();
                // Every member plans in turn on what the others left, as rounds do.
                for name in &names {
                    for claimed in plan(&rows, name, &names, 1).claim {
                        let lease = rows.iter_mut().find(|r| r.key == claimed).unwrap();
                        lease.holder = Some(name.clone());
                        lease.expires_at = 10;
                    }
                }
                assert!(
                    rows.iter().all(|r| r.holder.is_some()),
                    "{partitions} partitions over {count} members: {rows:?}"
                );
                let most = names
                    .iter()
                    .map(|n| rows.iter().filter(|r| r.holder.as_ref() == Some(n)).count())
                    .max()
                    .unwrap();
                assert!(most <= (partitions as usize).div_ceil(count));
            }
        }
    }
}
