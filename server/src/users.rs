//! Who may use a server, and how much: users with a role (viewer,
//! operator, admin), optionally limited to some pipelines, each with one
//! bearer token. A token is 256 random bits, shown once when it is made and
//! stored only as its SHA-256; presented tokens are compared with every
//! stored hash in constant time.
//!
//! The users live in `users.json` in the server's state directory (0600 in
//! a 0700 directory), beside the state database but not in it: the server
//! holds the database open while `stackpipe user add` runs on its host.
//! Changes take a lock (`users.lock`) and replace the file whole (a
//! temporary file, synced, renamed), so a reader never sees half a file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The users file in a state directory.
pub const USERS_FILE: &str = "users.json";
const LOCK_FILE: &str = "users.lock";
/// What starts every token: greppable in logs and by secret scanners.
const TOKEN_PREFIX: &str = "spt_";

/// What a user may do, each role everything the one before may: the
/// roles `approvers = ["role:..."]` names in the language.
pub use stackpipe_dsl::Role;

/// One user, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The pipelines the role applies to; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<String>,
    /// The SHA-256 of the user's token, hex. Never shown.
    #[serde(rename = "token_sha256")]
    token_hash: String,
    pub created_ms: u64,
    /// When the token was last made (added, or rotated).
    pub token_ms: u64,
}

impl User {
    /// The server itself, acting on its own (resuming the runs it was
    /// running when it stopped). It has no token: no request can be made
    /// as it.
    pub fn server() -> User {
        User { name: "stackpipe-server".into(), role: Role::Admin, pipelines: Vec::new(), token_hash: String::new(), created_ms: 0, token_ms: 0 }
    }

    /// Whether the user's role applies to `pipeline`.
    pub fn covers(&self, pipeline: &str) -> bool {
        self.pipelines.is_empty() || self.pipelines.iter().any(|p| p == pipeline)
    }

    /// Whether the user may do what `needed` may, on `pipeline` (None:
    /// something that belongs to no one pipeline, which a user limited to
    /// some pipelines may not do beyond viewing).
    pub fn may(&self, needed: Role, pipeline: Option<&str>) -> bool {
        let applies = match pipeline {
            Some(p) => self.covers(p),
            None => self.pipelines.is_empty() || needed == Role::Viewer,
        };
        applies && self.role.allows(needed)
    }
}

/// A new token: shown once, to whoever made it. `Debug` does not show it.
pub struct Token(String);

impl Token {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("`{0}` cannot name a user: use 1 to 64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter or a digit")]
    BadName(String),
    #[error("`{0}` cannot name a pipeline: use 1 to 128 letters, digits, `.`, `_` or `-`")]
    BadPipeline(String),
    #[error("there is already a user `{0}`")]
    Exists(String),
    #[error("there is no user `{name}`{hint}")]
    Unknown { name: String, hint: String },
    #[error("{} is writable by other users (mode {mode:04o}): anyone could give themselves a role; make it 0600", .path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{} is damaged: {why}", .path.display())]
    Damaged { path: PathBuf, why: String },
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot make a token: the system's random source failed: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UsersError + '_ {
    move |source| UsersError::Io { path: path.to_path_buf(), source }
}

/// Where a server's users are kept: `users.json` in its state directory,
/// or the `users` table of its PostgreSQL state.
#[derive(Clone)]
pub enum UsersHome {
    Dir(PathBuf),
    Shared(std::sync::Arc<stackpipe_state_postgres::PostgresStore>),
}

impl UsersHome {
    fn place(&self) -> PathBuf {
        match self {
            UsersHome::Dir(dir) => dir.join(USERS_FILE),
            UsersHome::Shared(store) => PathBuf::from(format!("{} (users)", stackpipe_runtime::state::StateBackend::location(&**store))),
        }
    }
}

fn shared_error(home: &UsersHome) -> impl FnOnce(stackpipe_runtime::state::StateError) -> UsersError + '_ {
    move |e| UsersError::Io { path: home.place(), source: std::io::Error::other(e.to_string()) }
}

/// How long a server trusts the users it read from a shared database:
/// `stackpipe user add` anywhere takes effect within it.
const SHARED_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The users of a state directory as a server sees them: read again
/// whenever `users.json` changes (`stackpipe user add` on the server's
/// host takes effect at the next request), else from memory.
pub struct UsersCache {
    home: UsersHome,
    loaded: std::sync::Mutex<Option<(Freshness, std::sync::Arc<Users>)>>,
}

/// What says whether the users read are still current: the file's stamp,
/// or (a shared database) when they were read.
#[derive(PartialEq)]
enum Freshness {
    File(FileStamp),
    ReadAt(std::time::Instant),
}

/// What tells one version of a file from another without reading it.
type FileStamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> FileStamp {
    let m = fs::metadata(path).ok()?;
    Some((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

impl UsersCache {
    pub fn new(home: UsersHome) -> UsersCache {
        UsersCache { home, loaded: std::sync::Mutex::new(None) }
    }

    /// The users as the file holds them now (as the database held them
    /// within [`SHARED_FRESH`]).
    pub fn current(&self) -> Result<std::sync::Arc<Users>, UsersError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let now = match &self.home {
            UsersHome::Dir(dir) => Freshness::File(stamp(&dir.join(USERS_FILE))),
            UsersHome::Shared(_) => Freshness::ReadAt(std::time::Instant::now()),
        };
        if let Some((at, users)) = loaded.as_ref() {
            let fresh = match (at, &now) {
                (Freshness::ReadAt(then), Freshness::ReadAt(now)) => now.duration_since(*then) < SHARED_FRESH,
                (a, b) => a == b,
            };
            if fresh {
                return Ok(users.clone());
            }
        }
        let users = std::sync::Arc::new(Users::load(&self.home)?);
        *loaded = Some((now, users.clone()));
        Ok(users)
    }
}

/// The users of one state directory, as read.
#[derive(Debug, Clone)]
pub struct Users {
    users: Vec<User>,
}

#[derive(Serialize, Deserialize)]
struct UsersDocument {
    users: Vec<User>,
}

impl Users {
    /// The users kept at `home` (none when there are none).
    pub fn load(home: &UsersHome) -> Result<Users, UsersError> {
        let dir = match home {
            UsersHome::Dir(dir) => dir,
            UsersHome::Shared(store) => {
                let records = store.user_records().map_err(shared_error(home))?;
                let users = records
                    .iter()
                    .map(|(_, r)| serde_json::from_str(r).map_err(|e| UsersError::Damaged { path: home.place(), why: e.to_string() }))
                    .collect::<Result<Vec<User>, UsersError>>()?;
                return Ok(Users { users });
            }
        };
        let path = dir.join(USERS_FILE);
        let users = match File::open(&path) {
            Ok(f) => {
                let meta = f.metadata().map_err(io(&path))?;
                let mode = meta.mode() & 0o7777;
                if mode & 0o022 != 0 {
                    return Err(UsersError::Exposed { path, mode });
                }
                let doc: UsersDocument = serde_json::from_reader(std::io::BufReader::new(f))
                    .map_err(|e| UsersError::Damaged { path: path.clone(), why: e.to_string() })?;
                doc.users
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Users { users })
    }

    pub fn list(&self) -> &[User] {
        &self.users
    }

    /// The user whose token `token` is, if any. Every stored hash is
    /// compared, in constant time: how long it takes does not say which
    /// user nearly matched, or whether one did.
    pub fn authenticate(&self, token: &str) -> Option<&User> {
        let presented = Sha256::digest(token.as_bytes());
        let mut found = None;
        for user in &self.users {
            let stored = hex::decode(&user.token_hash).unwrap_or_default();
            if bool::from(stored.as_slice().ct_eq(presented.as_slice())) {
                found = Some(user);
            }
        }
        found
    }

    /// Adds user `name`; the user and the new token (shown once).
    pub fn add(home: &UsersHome, name: &str, role: Role, pipelines: &[String]) -> Result<(User, Token), UsersError> {
        check_name(name)?;
        for p in pipelines {
            check_pipeline(p)?;
        }
        Users::change(home, |users| {
            if users.iter().any(|u| u.name == name) {
                return Err(UsersError::Exists(name.to_string()));
            }
            let (token, hash) = new_token()?;
            let now = now_ms();
            let mut pipelines = pipelines.to_vec();
            pipelines.sort();
            pipelines.dedup();
            let user = User { name: name.to_string(), role, pipelines, token_hash: hash, created_ms: now, token_ms: now };
            users.push(user.clone());
            users.sort_by(|a, b| a.name.cmp(&b.name));
            Ok((user, token))
        })
    }

    /// Removes user `name`; the user removed.
    pub fn remove(home: &UsersHome, name: &str) -> Result<User, UsersError> {
        Users::change(home, |users| {
            let at = position(users, name)?;
            Ok(users.remove(at))
        })
    }

    /// Gives user `name` a new token (the old one stops working); the token.
    pub fn rotate(home: &UsersHome, name: &str) -> Result<Token, UsersError> {
        Users::change(home, |users| {
            let at = position(users, name)?;
            let (token, hash) = new_token()?;
            users[at].token_hash = hash;
            users[at].token_ms = now_ms();
            Ok(token)
        })
    }

    /// Reads, changes and writes the users kept at `home`: a directory's
    /// under its lock; a database's as a swap, made again from what another
    /// change left if one came first.
    fn change<T>(home: &UsersHome, f: impl Fn(&mut Vec<User>) -> Result<T, UsersError>) -> Result<T, UsersError> {
        let dir = match home {
            UsersHome::Dir(dir) => dir,
            UsersHome::Shared(store) => {
                let as_records = |users: &[User]| -> Result<Vec<(String, String)>, UsersError> {
                    users
                        .iter()
                        .map(|u| {
                            let json = serde_json::to_string(u).map_err(|e| UsersError::Damaged { path: home.place(), why: e.to_string() })?;
                            Ok((u.name.clone(), json))
                        })
                        .collect()
                };
                for _ in 0..20 {
                    let previous = store.user_records().map_err(shared_error(home))?;
                    let mut users = Users::load(home)?.users;
                    users.sort_by(|a, b| a.name.cmp(&b.name));
                    let out = f(&mut users)?;
                    if store.swap_user_records(previous, as_records(&users)?).map_err(shared_error(home))? {
                        return Ok(out);
                    }
                }
                return Err(shared_error(home)(stackpipe_runtime::state::StateError::Db(
                    "the users kept changing under this change: try again".into(),
                )));
            }
        };
        private_dir(dir)?;
        let _lock = lock(dir)?;
        let mut users = Users::load(home)?.users;
        let out = f(&mut users)?;
        write(dir, &users)?;
        Ok(out)
    }
}

fn position(users: &[User], name: &str) -> Result<usize, UsersError> {
    users.iter().position(|u| u.name == name).ok_or_else(|| {
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        let hint = if names.is_empty() { " (there are no users)".to_string() } else { format!(" (there are: {})", names.join(", ")) };
        UsersError::Unknown { name: name.to_string(), hint }
    })
}

fn check_name(name: &str) -> Result<(), UsersError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(UsersError::BadName(name.to_string()))
    }
}

fn check_pipeline(name: &str) -> Result<(), UsersError> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(UsersError::BadPipeline(name.to_string()))
    }
}

/// A new token and its hash.
fn new_token() -> Result<(Token, String), UsersError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| UsersError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    Ok((Token(token), hash))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Creates `dir` (0700) if it is missing.
fn private_dir(dir: &Path) -> Result<(), UsersError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))
}

/// The users' lock, held until dropped (closing the file releases it).
fn lock(dir: &Path) -> Result<File, UsersError> {
    use std::os::fd::AsRawFd;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new().read(true).write(true).create(true).mode(0o600).open(&path).map_err(io(&path))?;
    // SAFETY: a plain flock on a file this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(&path)(std::io::Error::last_os_error()));
    }
    Ok(file)
}

/// Replaces the users file whole: a private temporary file, synced, renamed.
fn write(dir: &Path, users: &[User]) -> Result<(), UsersError> {
    let path = dir.join(USERS_FILE);
    let mut tmp = tempfile::Builder::new().prefix(".users.json.").tempfile_in(dir).map_err(io(dir))?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(0o600)).map_err(io(tmp.path()))?;
    let doc = UsersDocument { users: users.to_vec() };
    let text = serde_json::to_vec_pretty(&doc).map_err(|e| UsersError::Damaged { path: path.clone(), why: e.to_string() })?;
    tmp.write_all(&text).map_err(io(&path))?;
    tmp.as_file().sync_all().map_err(io(&path))?;
    tmp.persist(&path).map_err(|e| io(&path)(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before_them_and_pipelines_limit_them() {
        assert!(Role::Admin.allows(Role::Operator) && Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator) && !Role::Operator.allows(Role::Admin));
        assert_eq!(Role::named("operator"), Some(Role::Operator));
        assert_eq!(Role::named("root"), None);
        let dir = tempfile::tempdir().unwrap();
        let (web, _) = Users::add(&UsersHome::Dir(dir.path().into()), "web-op", Role::Operator, &["web".into()]).unwrap();
        assert!(web.may(Role::Operator, Some("web")) && web.may(Role::Viewer, Some("web")));
        assert!(!web.may(Role::Viewer, Some("db")), "another pipeline is not its business");
        assert!(!web.may(Role::Admin, Some("web")));
        assert!(web.may(Role::Viewer, None) && !web.may(Role::Operator, None));
        let (root, _) = Users::add(&UsersHome::Dir(dir.path().into()), "root", Role::Admin, &[]).unwrap();
        assert!(root.may(Role::Admin, None) && root.may(Role::Admin, Some("anything")));
    }

    #[test]
    fn a_token_is_shown_once_stored_as_a_hash_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let (alice, token) = Users::add(&UsersHome::Dir(dir.path().into()), "alice", Role::Viewer, &[]).unwrap();
        assert!(token.as_str().starts_with("spt_") && token.as_str().len() == 4 + 64);
        assert_eq!(format!("{token:?}"), "Token(..)");
        let file = fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
        assert!(!file.contains(token.as_str()), "the token itself is never stored");
        assert_eq!(fs::metadata(dir.path().join(USERS_FILE)).unwrap().permissions().mode() & 0o777, 0o600);

        let users = Users::load(&UsersHome::Dir(dir.path().into())).unwrap();
        assert_eq!(users.authenticate(token.as_str()), Some(&alice));
        assert_eq!(users.authenticate("spt_0000"), None);
        assert_eq!(users.authenticate(""), None);

        let new = Users::rotate(&UsersHome::Dir(dir.path().into()), "alice").unwrap();
        let users = Users::load(&UsersHome::Dir(dir.path().into())).unwrap();
        assert_eq!(users.authenticate(token.as_str()), None, "the old token stops working");
        assert_eq!(users.authenticate(new.as_str()).map(|u| u.name.as_str()), Some("alice"));

        Users::remove(&UsersHome::Dir(dir.path().into()), "alice").unwrap();
        assert_eq!(Users::load(&UsersHome::Dir(dir.path().into())).unwrap().authenticate(new.as_str()), None);
    }

    #[test]
    fn names_are_checked_and_mistakes_say_what_there_is() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Alice", "-x", "a b", "../x", &"a".repeat(65)] {
            assert!(matches!(Users::add(&UsersHome::Dir(dir.path().into()), bad, Role::Viewer, &[]), Err(UsersError::BadName(_))), "{bad}");
        }
        assert!(matches!(Users::add(&UsersHome::Dir(dir.path().into()), "bob", Role::Viewer, &["../etc".into()]), Err(UsersError::BadPipeline(_))));
        Users::add(&UsersHome::Dir(dir.path().into()), "bob", Role::Viewer, &[]).unwrap();
        assert!(matches!(Users::add(&UsersHome::Dir(dir.path().into()), "bob", Role::Admin, &[]), Err(UsersError::Exists(_))));
        let e = Users::remove(&UsersHome::Dir(dir.path().into()), "bobby").unwrap_err().to_string();
        assert_eq!(e, "there is no user `bobby` (there are: bob)");
    }

    #[test]
    fn a_users_file_others_can_write_or_that_is_damaged_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Users::load(&UsersHome::Dir(dir.path().into())).unwrap().list().is_empty(), "no file: no users");
        Users::add(&UsersHome::Dir(dir.path().into()), "carol", Role::Admin, &[]).unwrap();
        let path = dir.path().join(USERS_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(Users::load(&UsersHome::Dir(dir.path().into())), Err(UsersError::Exposed { mode: 0o666, .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "{\"users\": [").unwrap();
        assert!(matches!(Users::load(&UsersHome::Dir(dir.path().into())), Err(UsersError::Damaged { .. })));
        // A change never builds on a damaged file.
        assert!(Users::add(&UsersHome::Dir(dir.path().into()), "dave", Role::Viewer, &[]).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"users\": [");
    }

    #[test]
    fn changes_from_many_threads_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || Users::add(&UsersHome::Dir(path.clone()), &format!("u{i}"), Role::Viewer, &[]).unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Users::load(&UsersHome::Dir(path.clone())).unwrap().list().len(), 8);
    }
}
