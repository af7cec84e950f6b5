//! Whether an approver and a requester are two different people, as the two-person rule needs.
//!
//! Names are not people: whoever creates an account chooses its first password, and whoever
//! promotes or enables an account chooses who holds its authority. So every account records the
//! person who created it over the API and the person who last granted it authority
//! ([`UserRecord::created_by`], [`UserRecord::granted_by`]); the accounts the host made (the
//! initial admin, `toolgate users add`) owe nothing to anyone. An account *owes* its authority
//! to those persons, and transitively to whom they owe theirs.
//!
//! An approver is independent of a requester when neither owes anything to the other, they owe
//! nothing to a common person, and the approver's account and authority predate the request.

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;

use toolgate_store::UserRecord;

/// Why `approver` may not approve the request `requester` made at `requested_at`, if any.
/// `requester` is a person: for a request made with an API key, the key's creator.
pub fn conflict(users: &[UserRecord], approver: &str, requester: &str, requested_at: OffsetDateTime) -> Option<String> {
    let by_name: HashMap<&str, &UserRecord> = users.iter().map(|u| (u.username.as_str(), u)).collect();
    let Some(account) = by_name.get(approver) else {
        return Some(format!("approver `{approver}` has no account"));
    };
    if account.created_at > requested_at {
        return Some(format!("approver `{approver}` was created after the request"));
    }
    if account.granted_at.is_some_and(|at| at > requested_at) {
        return Some(format!("approver `{approver}` was promoted or enabled after the request"));
    }
    let approver_owes = owes(&by_name, approver);
    if let Some(path) = approver_owes.get(requester) {
        return Some(relation(&by_name, "approver", approver, "the requester", requester, path));
    }
    let requester_owes = owes(&by_name, requester);
    if let Some(path) = requester_owes.get(approver) {
        return Some(relation(&by_name, "the requester", requester, "the approver", approver, path));
    }
    let mut common: Vec<&str> =
        approver_owes.keys().filter(|p| requester_owes.contains_key(*p)).map(String::as_str).collect();
    common.sort_unstable();
    common.first().map(|person| {
        format!("approver `{approver}` and the requester `{requester}` both owe their account or role to `{person}`")
    })
}

/// Everyone `name` owes its account or authority to, each with the chain of accounts that leads
/// there (`name` first, the person last).
fn owes(by_name: &HashMap<&str, &UserRecord>, name: &str) -> HashMap<String, Vec<String>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    let mut queue = VecDeque::from([vec![name.to_owned()]]);
    while let Some(path) = queue.pop_front() {
        let Some(account) = path.last().and_then(|last| by_name.get(last.as_str())) else { continue };
        for person in [&account.created_by, &account.granted_by].into_iter().flatten() {
            if person == name || found.contains_key(person) {
                continue;
            }
            let mut next = path.clone();
            next.push(person.clone());
            found.insert(person.clone(), next.clone());
            queue.push_back(next);
        }
    }
    found
}

/// `who` (named `who_role`) owes its account to `whom` along `path`, in words.
fn relation(
    by_name: &HashMap<&str, &UserRecord>,
    who_role: &str,
    who: &str,
    whom_role: &str,
    whom: &str,
    path: &[String],
) -> String {
    let account = by_name.get(who);
    if path.len() == 2 {
        if account.is_some_and(|a| a.created_by.as_deref() == Some(whom)) {
            return format!("{who_role} `{who}` was created by {whom_role} `{whom}`");
        }
        return format!("{who_role} `{who}` was promoted or enabled by {whom_role} `{whom}`");
    }
    let through = path[1..path.len() - 1].iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
    format!("{who_role} `{who}` owes its account or role to {whom_role} `{whom}` through {through}")
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use toolgate_core::model::Role;

    fn account(name: &str, created_by: Option<&str>, granted_by: Option<&str>) -> UserRecord {
        let mut user = UserRecord::new(name, String::new(), Role::Admin);
        user.created_at -= Duration::hours(1);
        user.created_by = created_by.map(str::to_owned);
        user.granted_by = granted_by.map(str::to_owned);
        user.granted_at = granted_by.map(|_| user.created_at);
        user
    }

    fn check(users: &[UserRecord], approver: &str, requester: &str) -> Option<String> {
        conflict(users, approver, requester, OffsetDateTime::now_utc() - Duration::minutes(1))
    }

    #[test]
    fn accounts_made_by_the_host_are_independent() {
        let users = [account("root", None, None), account("ops", None, None)];
        assert_eq!(check(&users, "ops", "root"), None);
        assert_eq!(check(&users, "root", "ops"), None);
    }

    #[test]
    fn an_account_owing_anything_to_the_other_side_is_refused_and_says_why() {
        let users = [
            account("root", None, None),
            account("puppet", Some("root"), None),
            account("promoted", None, Some("root")),
            account("deep", Some("puppet"), None),
            account("ops", None, None),
            account("twin", Some("ops"), None),
            account("triplet", Some("ops"), None),
        ];
        let cases = [
            ("puppet", "root", "approver `puppet` was created by the requester `root`"),
            ("promoted", "root", "approver `promoted` was promoted or enabled by the requester `root`"),
            ("deep", "root", "approver `deep` owes its account or role to the requester `root` through `puppet`"),
            ("root", "deep", "the requester `deep` owes its account or role to the approver `root` through `puppet`"),
            ("twin", "triplet", "approver `twin` and the requester `triplet` both owe their account or role to `ops`"),
        ];
        for (approver, requester, want) in cases {
            assert_eq!(check(&users, approver, requester).as_deref(), Some(want), "{approver} for {requester}");
        }
        assert_eq!(check(&users, "ops", "deep"), None, "no relation");
        assert_eq!(check(&users, "ghost", "root").as_deref(), Some("approver `ghost` has no account"));
    }

    #[test]
    fn authority_given_after_the_request_is_refused_whoever_gave_it() {
        let mut late = account("late", None, None);
        late.granted_by = Some("ops".into());
        late.granted_at = Some(OffsetDateTime::now_utc());
        let mut new = account("new", None, None);
        new.created_at = OffsetDateTime::now_utc();
        let users = [account("root", None, None), account("ops", None, None), late, new];
        assert_eq!(
            check(&users, "late", "root").as_deref(),
            Some("approver `late` was promoted or enabled after the request")
        );
        assert_eq!(check(&users, "new", "root").as_deref(), Some("approver `new` was created after the request"));
    }
}
