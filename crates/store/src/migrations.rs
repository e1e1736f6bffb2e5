//! Schema migrations of both backends: `.sql` files under `crates/store/migrations/`,
//! embedded at build time, applied in version order, each in its own transaction together
//! with its row in the database's `schema_migrations` table. The backends run the
//! statements (rusqlite is synchronous, tokio-postgres is not); which migrations are due is
//! decided here, once for both.

/// One schema change: its version (1, 2, … within its database) and its SQL.
#[derive(Debug)]
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

/// A [`Migration`] from a file under `crates/store/migrations/`.
macro_rules! migration {
    ($version:literal, $file:literal) => {
        $crate::migrations::Migration {
            version: $version,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $file)),
        }
    };
}

/// The migrations of `all` not yet applied to a database whose highest applied version is
/// `applied`, in order.
pub(crate) fn pending(all: &'static [Migration], applied: i64) -> impl Iterator<Item = &'static Migration> {
    all.iter().filter(move |m| m.version > applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &[Migration] = &[
        Migration { version: 1, sql: "a" },
        Migration { version: 2, sql: "b" },
        Migration { version: 3, sql: "c" },
    ];

    #[test]
    fn pending_is_what_comes_after_the_applied_version_in_order() {
        let cases: &[(i64, &[i64])] = &[(0, &[1, 2, 3]), (1, &[2, 3]), (3, &[]), (9, &[])];
        for (applied, want) in cases {
            let got: Vec<i64> = pending(LIST, *applied).map(|m| m.version).collect();
            assert_eq!(&got, want, "applied {applied}");
        }
    }

    /// Every list of every backend counts 1, 2, 3 … with no gap or repeat, and no file is empty.
    #[test]
    fn every_backend_numbers_its_migrations_from_one_without_gaps() {
        for (name, list) in crate::sqlite::migration_lists()
            .into_iter()
            .chain(crate::postgres::migration_lists())
        {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{name}: migration {i}");
                assert!(
                    !m.sql.trim().is_empty(),
                    "{name}: migration {} is empty",
                    m.version
                );
            }
        }
    }
}
