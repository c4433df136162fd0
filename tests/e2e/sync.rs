//! `pgduplex sync` (issue 5): each policy gives its result row by row and makes
//! `scan` exit 0; `--dry-run` changes nothing; foreign-key order without replica
//! role; a unique swap; keyless tables copied whole; nothing sync writes is captured.

use pgduplex_testkit::TestPair;
use serde_json::Value;

use crate::scan::scan_json;
use crate::support::*;

const SCHEMA: &str = "
    create table parent (id int primary key, name text);
    create table child (id int primary key, parent_id int not null references parent (id), v text);
    create table uniq (id int primary key, code text not null unique);
    create table tags (tag text, n int);
    create table ident (id int generated always as identity primary key, v text);
    insert into parent select g, 'p' || g from generate_series(1, 100) g;
    insert into child select g, g % 100 + 1, 'c' || g from generate_series(1, 300) g;
    insert into uniq select g, 'code' || g from generate_series(1, 50) g;
    insert into tags select 't' || (g % 7), g % 3 from generate_series(1, 40) g;
    insert into ident (v) select 'v' || g from generate_series(1, 10) g;";

/// The same start on both sides, then each side's own changes.
async fn diverged_pair() -> TestPair {
    let pair = TestPair::new().await;
    pair.execute_both(SCHEMA).await.unwrap();
    pair.left
        .execute(
            "insert into parent values (500, 'left only');
             insert into child values (500, 500, 'left child');
             update parent set name = 'left name' where id = 5;
             update ident set v = 'left v' where id = 3;",
        )
        .await
        .unwrap();
    pair.right
        .execute(
            "insert into parent values (600, 'right only');
             insert into child values (600, 600, 'right child'), (601, 1, 'right child of 1');
             update child set v = 'right v' where id = 7;
             update uniq set code = 'tmp' where id = 1;
             update uniq set code = 'code1' where id = 2;
             update uniq set code = 'code2' where id = 1;
             insert into tags values ('extra', 9), ('t1', 1);",
        )
        .await
        .unwrap();
    pair
}

fn counts(report: &Value, table: &str) -> (u64, u64, u64) {
    let t = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("{table} not in {report:#}"));
    (
        t["inserted"].as_u64().unwrap(),
        t["updated"].as_u64().unwrap(),
        t["deleted"].as_u64().unwrap(),
    )
}

async fn sync_json(cfg: &ConfigFile, args: &[&str]) -> Value {
    let mut a = vec!["sync", "--format", "json"];
    a.extend_from_slice(args);
    let run = pgduplex_async(&cfg.path, &a).await;
    run.assert_code(0);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON ({e}):\n{}", run.all()))
}

async fn check_policy(pair: &TestPair, cfg: &ConfigFile, policy: &str) {
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let (winner, loser) = if policy == "left_wins" {
        (&pair.left, &pair.right)
    } else {
        (&pair.right, &pair.left)
    };
    let winner_before = all_user_rows(winner).await;
    let loser_before = all_user_rows(loser).await;
    // Keys each side holds alone, as built by diverged_pair.
    let (parent, child) = if policy == "left_wins" {
        ((1, 1, 1), (1, 1, 2)) // parent 500 in, 5 updated, 600 out; child 500 in, 7 updated, 600 and 601 out
    } else {
        ((1, 1, 1), (2, 1, 1))
    };
    // Dry run: counts and lists, changes nothing.
    let dry = sync_json(cfg, &["--policy", policy, "--dry-run"]).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(counts(&dry, "public.parent"), parent, "{dry:#}");
    assert_eq!(counts(&dry, "public.child"), child, "{dry:#}");
    assert_eq!(counts(&dry, "public.uniq"), (0, 2, 0), "{dry:#}");
    assert_eq!(counts(&dry, "public.ident"), (0, 1, 0), "{dry:#}");
    assert_eq!(all_user_rows(winner).await, winner_before);
    assert_eq!(all_user_rows(loser).await, loser_before);

    let done = sync_json(cfg, &["--policy", policy]).await;
    assert_eq!(done["dry_run"], false);
    assert_eq!(counts(&done, "public.parent"), parent, "{done:#}");
    assert_eq!(counts(&done, "public.child"), child, "{done:#}");
    assert_eq!(counts(&done, "public.uniq"), (0, 2, 0), "{done:#}");
    assert_eq!(counts(&done, "public.ident"), (0, 1, 0), "{done:#}");
    let tags = done["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.tags")
        .unwrap();
    assert_eq!(
        tags["copied_whole"],
        if policy == "left_wins" { 40 } else { 42 }
    );

    // The winner is untouched, the loser now holds exactly the winner's rows,
    // nothing was captured (no change pending on either side: sync's writes are
    // not captured), and scan agrees.
    assert_eq!(all_user_rows(winner).await, winner_before);
    assert_converged(pair).await;
    let report = scan_json(cfg, &[], 0).await;
    assert_eq!(report["total_differences"], 0);
    // A second sync finds nothing to do.
    let again = sync_json(cfg, &["--policy", policy]).await;
    assert_eq!(again["total_changes"], 0, "{again:#}");
}

#[tokio::test]
async fn left_wins_as_superuser_makes_the_right_equal() {
    let pair = diverged_pair().await;
    let cfg = ConfigFile::for_pair(&pair, "");
    check_policy(&pair, &cfg, "left_wins").await;
}

#[tokio::test]
async fn right_wins_as_table_owner_respects_foreign_keys() {
    let pair = diverged_pair().await;
    // Not a superuser: the server checks the foreign keys of every write.
    let cfg = config_as_owner(&pair, "").await;
    check_policy(&pair, &cfg, "right_wins").await;
}

#[tokio::test]
async fn sync_needs_a_winner_and_valid_input() {
    let pair = diverged_pair().await;
    let cfg = ConfigFile::for_pair(&pair, "[replication]\nconflict = \"latest_wins\"\n");
    let before = (
        all_user_rows(&pair.left).await,
        all_user_rows(&pair.right).await,
    );
    let run = pgduplex_async(&cfg.path, &["sync"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("--policy"), "{}", run.stderr);
    let run = pgduplex_async(
        &cfg.path,
        &["sync", "--policy", "left_wins", "--tables", "("],
    )
    .await;
    run.assert_code(2);
    let run = pgduplex_async(&cfg.path, &["sync", "--policy", "nobody_wins"]).await;
    run.assert_code(2);
    assert_eq!(
        (
            all_user_rows(&pair.left).await,
            all_user_rows(&pair.right).await
        ),
        before
    );
    // The configured policy is the default.
    let cfg = ConfigFile::for_pair(&pair, "[replication]\nconflict = \"right_wins\"\n");
    let dry = sync_json(&cfg, &["--dry-run"]).await;
    assert_eq!(dry["winner"], "right");
    // Installed for one apply role, run as another: what sync wrote would be
    // captured and sent back, so it refuses and changes nothing.
    pgduplex_async(&cfg.path, &["install"]).await.assert_code(0);
    let owner = config_as_owner(&pair, "").await;
    let before = (
        all_user_rows(&pair.left).await,
        all_user_rows(&pair.right).await,
    );
    let run = pgduplex_async(&owner.path, &["sync", "--policy", "left_wins"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("apply role"), "{}", run.stderr);
    assert_eq!(
        (
            all_user_rows(&pair.left).await,
            all_user_rows(&pair.right).await
        ),
        before
    );
    // A table whose definitions differ is left alone, said, and exits 1.
    pair.left
        .execute("alter table tags add column extra int")
        .await
        .unwrap();
    let run = pgduplex_async(&cfg.path, &["sync", "--tables", "tags"]).await;
    run.assert_code(1);
    assert!(
        run.stdout.contains("skipped: the definitions differ"),
        "{}",
        run.stdout
    );
}

/// The apply-role check reads the apply role of this configuration's sync only:
/// another sync on the same databases, installed by another role for other
/// tables, does not make sync refuse (it did: the check read every sync's role).
#[tokio::test]
async fn the_apply_role_of_another_sync_does_not_block_sync() {
    let pair = diverged_pair().await;
    let only_uniq = "[tables]\ninclude = ['^public\\.uniq$']\n";
    let but_uniq = "[tables]\nexclude = ['^public\\.uniq$']\n";
    // Sync "a", as the table owner, captures table uniq only.
    let a = config_as_owner(
        &pair,
        &format!("[replication]\nsync = \"a\"\n\n{only_uniq}"),
    )
    .await;
    pgduplex_async(&a.path, &["install"]).await.assert_code(0);
    // Sync "b", as the superuser, covers every other table.
    let b = ConfigFile::for_pair(&pair, &format!("[replication]\nsync = \"b\"\n\n{but_uniq}"));
    pgduplex_async(&b.path, &["install"]).await.assert_code(0);
    let run = pgduplex_async(&b.path, &["sync", "--policy", "left_wins"]).await;
    run.assert_code(0);
    scan_json(&b, &[], 0).await;
    // Sync "b" as the owner is still refused: its tables were installed for the
    // superuser, and nothing is changed.
    pair.left
        .execute("update parent set name = 'changed again' where id = 5")
        .await
        .unwrap();
    let b_as_owner = ConfigFile::for_urls(
        &a_url(&a, "left"),
        &a_url(&a, "right"),
        &format!("[replication]\nsync = \"b\"\n\n{but_uniq}"),
    );
    let before = all_user_rows(&pair.right).await;
    let run = pgduplex_async(&b_as_owner.path, &["sync", "--policy", "left_wins"]).await;
    run.assert_code(1);
    assert!(run.stderr.contains("apply role"), "{}", run.stderr);
    assert_eq!(all_user_rows(&pair.right).await, before);
}

/// The URL of one side in a configuration file written by the harness
/// (`[left]` then `url = "..."` on the next line).
fn a_url(cfg: &ConfigFile, side: &str) -> String {
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let mut lines = text.lines().skip_while(|l| *l != format!("[{side}]"));
    let url = lines.nth(1).and_then(|l| l.strip_prefix("url = "));
    url.expect("the harness writes url on the line after the section")
        .trim_matches('"')
        .to_string()
}
