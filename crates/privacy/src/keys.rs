//! The key file and the keyring read from it.
//!
//! ```text
//! # missive key file: keep it out of backups of the data directory
//! index <base64 of 32 bytes>
//! key k1 <base64 of 32 bytes>
//! key k2 <base64 of 32 bytes>
//! ```
//!
//! - `index SECRET` (exactly one) keys the blind indexes and the pseudonyms. It never rotates:
//!   changing it would orphan every index and pseudonym already stored.
//! - `key ID SECRET` is a master key, which wraps data keys. Ids are 1-32 characters of
//!   `[A-Za-z0-9_-]` and unique. The last `key` line is the active one: rotation appends a key, and
//!   the older ones stay to unwrap what they wrapped.
//! - Secrets are standard base64 (with padding) of exactly 32 bytes.
//! - `#` starts a comment, to the end of the line; blank lines are ignored.
//!
//! An error names the line and what is wrong with it, never the secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{PrivacyError, Secret32, is_valid_id};

const HEADER: &str = "# missive key file: keep it out of backups of the data directory";

#[derive(Clone)]
pub(crate) struct MasterKey {
    pub(crate) id: String,
    pub(crate) secret: Secret32,
}

/// The index key and the master keys. The active master key is kept apart so that there always
/// is one.
#[derive(Clone)]
pub struct Keyring {
    pub(crate) index_key: Secret32,
    pub(crate) previous: Vec<MasterKey>,
    pub(crate) active: MasterKey,
}

impl Keyring {
    /// Reads a key file (see the module documentation for its format).
    pub fn parse(text: &str) -> Result<Keyring, PrivacyError> {
        let mut index_key = None;
        let mut master_keys: Vec<MasterKey> = Vec::new();
        for (number, raw) in text.lines().enumerate() {
            let line = number + 1;
            let fail = |reason: &str| PrivacyError::KeyFileLine {
                line,
                reason: reason.to_owned(),
            };
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let words: Vec<&str> = content.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["index", secret] => {
                    if index_key.is_some() {
                        return Err(fail("a second index line: there is exactly one"));
                    }
                    index_key = Some(decode_secret(secret).map_err(fail)?);
                }
                ["index", ..] => return Err(fail("expected `index SECRET`")),
                ["key", id, secret] => {
                    if !is_valid_id(id, 32) {
                        return Err(fail("key id must be 1-32 characters of A-Z a-z 0-9 _ -"));
                    }
                    if master_keys.iter().any(|key| key.id == *id) {
                        return Err(fail(&format!("key id {id} appears twice")));
                    }
                    let secret = decode_secret(secret).map_err(fail)?;
                    master_keys.push(MasterKey {
                        id: (*id).to_owned(),
                        secret,
                    });
                }
                ["key", ..] => return Err(fail("expected `key ID SECRET`")),
                // The first word is not echoed: it might be a misplaced secret.
                _ => return Err(fail("a line starts with `index`, `key` or `#`")),
            }
        }
        let index_key = index_key.ok_or(PrivacyError::MissingIndexKey)?;
        let active = master_keys.pop().ok_or(PrivacyError::MissingMasterKey)?;
        Ok(Keyring {
            index_key,
            previous: master_keys,
            active,
        })
    }

    /// A fresh keyring: a new index key and one master key, `k1`.
    pub fn generate() -> Keyring {
        let active = MasterKey {
            id: "k1".to_owned(),
            secret: Secret32::random(),
        };
        Keyring {
            index_key: Secret32::random(),
            previous: Vec::new(),
            active,
        }
    }

    /// The key file text; [`Keyring::parse`] reads it back to the same keyring.
    pub fn to_file_text(&self) -> String {
        let mut text = format!("{HEADER}\nindex {}\n", STANDARD.encode(self.index_key.0));
        for key in self.master_keys() {
            text.push_str(&format!("key {} {}\n", key.id, STANDARD.encode(key.secret.0)));
        }
        text
    }

    /// This keyring with a fresh master key appended and made active, and the new key's id:
    /// `k{n+1}` for n keys, or the next such id not taken.
    pub fn with_new_master_key(&self) -> (Keyring, String) {
        let taken = |id: &str| self.master_keys().any(|key| key.id == id);
        let mut number = self.previous.len() + 2;
        while taken(&format!("k{number}")) {
            number += 1;
        }
        let id = format!("k{number}");
        let mut previous = self.previous.clone();
        previous.push(self.active.clone());
        let active = MasterKey {
            id: id.clone(),
            secret: Secret32::random(),
        };
        (
            Keyring {
                index_key: self.index_key.clone(),
                previous,
                active,
            },
            id,
        )
    }

    /// The keyring without the older master key `id` (after every data key was re-wrapped
    /// under the active one); `None` when `id` is the active key or unknown.
    pub fn without_master_key(&self, id: &str) -> Option<Keyring> {
        if self.active.id == id || !self.previous.iter().any(|k| k.id == id) {
            return None;
        }
        Some(Keyring {
            index_key: self.index_key.clone(),
            previous: self.previous.iter().filter(|k| k.id != id).cloned().collect(),
            active: self.active.clone(),
        })
    }

    /// The id of the master key that wraps new data keys.
    pub fn active_key_id(&self) -> &str {
        &self.active.id
    }

    /// The ids of all master keys, oldest first; the last is the active one.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.master_keys().map(|key| key.id.as_str())
    }

    /// The ids of the master keys, the active one last.
    pub fn master_key_ids(&self) -> Vec<&str> {
        self.master_keys().map(|k| k.id.as_str()).collect()
    }

    pub(crate) fn master_keys(&self) -> impl Iterator<Item = &MasterKey> {
        self.previous.iter().chain(std::iter::once(&self.active))
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active_key_id", &self.active.id)
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn decode_secret(text: &str) -> Result<Secret32, &'static str> {
    let bytes = zeroize::Zeroizing::new(STANDARD.decode(text).map_err(|_| "secret is not valid base64")?);
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| "secret is not 32 bytes")?;
    Ok(Secret32(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn error_of(text: &str) -> String {
        Keyring::parse(text).expect_err("parse should fail").to_string()
    }

    #[test]
    fn parse_reads_comments_blank_lines_and_makes_the_last_key_active() {
        let text = format!(
            "# comment\n\nindex {}\nkey old {}  # the first\nkey new_2 {}\n",
            secret_b64(1),
            secret_b64(2),
            secret_b64(3)
        );
        let keyring = Keyring::parse(&text).unwrap();
        assert_eq!(keyring.active_key_id(), "new_2");
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), ["old", "new_2"]);
        assert_eq!(keyring.index_key.0, [1; 32]);
        assert_eq!(keyring.active.secret.0, [3; 32]);
    }

    #[test]
    fn file_text_round_trips_through_parse() {
        let (keyring, _) = Keyring::generate().with_new_master_key();
        let text = keyring.to_file_text();
        assert!(text.starts_with(HEADER));
        assert_eq!(Keyring::parse(&text).unwrap().to_file_text(), text);
    }

    #[test]
    fn parse_errors_name_the_line_and_the_problem() {
        let index = format!("index {}\n", secret_b64(1));
        let key = format!("key k1 {}\n", secret_b64(2));
        assert_eq!(
            error_of(&format!("{index}\n{key}{key}")),
            "key file line 4: key id k1 appears twice"
        );
        assert_eq!(
            error_of(&format!("{index}{index}{key}")),
            "key file line 2: a second index line: there is exactly one"
        );
        assert_eq!(
            error_of(&format!("{index}key k1 abc\n")),
            "key file line 2: secret is not valid base64"
        );
        let short = STANDARD.encode([0u8; 16]);
        assert_eq!(
            error_of(&format!("{index}key k1 {short}\n")),
            "key file line 2: secret is not 32 bytes"
        );
        assert!(
            error_of(&format!("{index}key bad.id {}\n", secret_b64(2)))
                .starts_with("key file line 2: key id")
        );
        assert!(
            error_of(&format!("#\n{index}key {}\n", secret_b64(2))).starts_with("key file line 3: expected")
        );
        assert_eq!(error_of(&key), "key file has no index line");
        assert_eq!(error_of(&index), "key file has no key line");
    }

    #[test]
    fn parse_errors_never_echo_a_secret() {
        let secret = secret_b64(7);
        for text in [
            format!("{secret}\n"),
            format!("key {secret}\n"),
            format!("index {secret} {secret}\n"),
        ] {
            let message = error_of(&text);
            assert!(message.starts_with("key file line 1"), "{message}");
            assert!(!message.contains(&secret), "{message}");
        }
    }

    #[test]
    fn new_master_key_is_appended_active_and_takes_the_next_free_id() {
        let text = format!("index {}\nkey k2 {}\n", secret_b64(1), secret_b64(2));
        let keyring = Keyring::parse(&text).unwrap();
        let (rotated, id) = keyring.with_new_master_key();
        assert_eq!(id, "k3", "k2 is taken");
        assert_eq!(rotated.active_key_id(), "k3");
        assert_eq!(rotated.key_ids().collect::<Vec<_>>(), ["k2", "k3"]);
        assert_eq!(
            rotated.index_key.0, keyring.index_key.0,
            "the index key never rotates"
        );
        assert_ne!(rotated.active.secret.0, keyring.active.secret.0);
    }

    #[test]
    fn debug_shows_ids_and_no_secret() {
        let keyring = Keyring::generate();
        let debug = format!("{keyring:?}");
        assert!(debug.contains("k1"), "{debug}");
        assert!(!debug.contains(&STANDARD.encode(keyring.index_key.0)), "{debug}");
        assert!(
            !debug.contains(&STANDARD.encode(keyring.active.secret.0)),
            "{debug}"
        );
        assert!(
            !debug.contains(&format!("{:?}", keyring.active.secret.0)),
            "{debug}"
        );
    }

    #[test]
    fn a_retired_key_leaves_the_keyring_but_the_active_one_cannot() {
        let (two, new_id) = Keyring::generate().with_new_master_key();
        assert!(two.without_master_key(&new_id).is_none());
        assert!(two.without_master_key("nope").is_none());
        let one = two.without_master_key("k1").unwrap();
        assert_eq!(one.key_ids().collect::<Vec<_>>(), vec![new_id.as_str()]);
        let reread = Keyring::parse(&one.to_file_text()).unwrap();
        assert_eq!(reread.active_key_id(), new_id);
    }
}
