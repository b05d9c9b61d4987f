//! Layout, shared links, the switch of `current`, and pruning.

use std::fs;
use std::path::{Path, PathBuf};

use gantry_release::{link_shared, prune, switch_current, ServiceLayout, UNPACK_PREFIX};

use crate::{write_archive, Ent};

fn make_release(layout: &ServiceLayout, name: &str) -> PathBuf {
    let path = layout.release_path(name);
    fs::create_dir_all(path.join("bin")).unwrap();
    fs::write(path.join("bin/app"), name).unwrap();
    path
}

#[tokio::test]
async fn releases_current_and_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    assert!(layout.releases().await.unwrap().is_empty());
    layout.ensure_dirs().await.unwrap();
    assert!(layout.releases_dir().is_dir() && layout.shared_dir().is_dir());
    assert_eq!(layout.current().await.unwrap(), None);

    let names = [
        "b-2-20250102T000000.000Z",
        "b-1-20250101T000000.000Z",
        "b-2-20250103T000000.000Z",
    ];
    for name in names {
        make_release(&layout, name);
    }
    // Not releases: a file, an unpack in progress, a directory with another name.
    fs::write(layout.releases_dir().join("notes-1"), "").unwrap();
    fs::create_dir(layout.releases_dir().join(format!("{UNPACK_PREFIX}x-1"))).unwrap();
    fs::create_dir(layout.releases_dir().join("misc")).unwrap();

    let releases = layout.releases().await.unwrap();
    let order: Vec<&str> = releases.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, [names[1], names[0], names[2]]);
    let newest_b2 = layout.find_release("b-2").await.unwrap().unwrap();
    assert_eq!(newest_b2.name, names[2]);
    assert_eq!(newest_b2.build_id, "b-2");
    assert_eq!(layout.find_release("b-9").await.unwrap(), None);

    for name in [names[0], names[2], names[1]] {
        switch_current(&layout, &layout.release_path(name))
            .await
            .unwrap();
        let current = layout.current().await.unwrap().unwrap();
        assert_eq!(current.name, name);
        assert_eq!(
            fs::read_link(layout.current_link()).unwrap(),
            Path::new("releases").join(name)
        );
        assert_eq!(
            fs::read_to_string(layout.current_link().join("bin/app")).unwrap(),
            name
        );
    }
    let stray: Vec<_> = fs::read_dir(layout.service_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("current.tmp-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // Only directories in releases/ can become current.
    for bad in [
        tmp.path().to_path_buf(),
        layout.release_path("missing-1"),
        layout.shared_dir(),
    ] {
        assert!(
            switch_current(&layout, &bad).await.is_err(),
            "{}",
            bad.display()
        );
    }
    assert_eq!(layout.current().await.unwrap().unwrap().name, names[1]);
}

#[tokio::test]
async fn a_current_that_is_not_a_release_link_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    layout.ensure_dirs().await.unwrap();
    std::os::unix::fs::symlink("/elsewhere", layout.current_link()).unwrap();
    let err = layout.current().await.unwrap_err().to_string();
    assert!(err.contains("not a release"), "{err}");
    assert!(prune(&layout, 1, &[]).await.is_err());
    fs::remove_file(layout.current_link()).unwrap();
    fs::create_dir(layout.current_link()).unwrap();
    let err = layout.current().await.unwrap_err().to_string();
    assert!(err.contains("not a symlink"), "{err}");
}

#[tokio::test]
async fn shared_entries_are_linked_into_the_release() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    let archive = tmp.path().join("a.tar.gz");
    write_archive(
        &archive,
        &[
            Ent::File("config/app.env", b"FROM_ARCHIVE=1\n", 0o644),
            Ent::File("log/old.log", b"old\n", 0o644),
            Ent::File("bin/app", b"app", 0o755),
        ],
    );
    layout.ensure_dirs().await.unwrap();
    fs::create_dir_all(layout.shared_dir().join("config")).unwrap();
    fs::write(layout.shared_dir().join("config/app.env"), "SECRET=1\n").unwrap();

    let release = gantry_release::unpack(&archive, &layout, "b-1", 1 << 20)
        .await
        .unwrap();
    let shared = [
        "config/app.env".to_string(),
        "log/".to_string(),
        "tmp/cache/".to_string(),
        "data/state.db".to_string(),
    ];
    link_shared(&layout, &release, &shared).await.unwrap();

    // The shared file wins over the archive's; the archive's log directory is gone.
    assert_eq!(
        fs::read_to_string(release.join("config/app.env")).unwrap(),
        "SECRET=1\n"
    );
    assert_eq!(
        fs::read_link(release.join("config/app.env")).unwrap(),
        Path::new("../../../shared/config/app.env")
    );
    assert_eq!(
        fs::read_link(release.join("log")).unwrap(),
        Path::new("../../shared/log")
    );
    assert!(layout.shared_dir().join("log").is_dir());
    assert!(!layout.shared_dir().join("log/old.log").exists());
    fs::write(release.join("log/new.log"), "x").unwrap();
    assert!(layout.shared_dir().join("log/new.log").exists());
    assert!(layout.shared_dir().join("tmp/cache").is_dir());
    assert!(release.join("tmp/cache").is_dir());
    assert_eq!(
        fs::read(layout.shared_dir().join("data/state.db")).unwrap(),
        b""
    );
    assert!(fs::symlink_metadata(release.join("data/state.db"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Linking again (a redeploy of the same release) is fine.
    link_shared(&layout, &release, &shared).await.unwrap();

    for bad in ["../x", "/etc/passwd", "a/../../x"] {
        let err = link_shared(&layout, &release, &[bad.to_string()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
    let err = link_shared(&layout, tmp.path(), &shared).await.unwrap_err();
    assert!(err.to_string().contains("not a release directory"), "{err}");
}

#[tokio::test]
async fn a_shared_entry_below_an_archive_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    let archive = tmp.path().join("a.tar.gz");
    write_archive(
        &archive,
        &[Ent::Dir("real/"), Ent::Symlink("config", "real")],
    );
    let release = gantry_release::unpack(&archive, &layout, "b-1", 1 << 20)
        .await
        .unwrap();
    let err = link_shared(&layout, &release, &["config/app.env".into()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(!release.join("real/app.env").exists());
}

#[tokio::test]
async fn prune_keeps_current_protected_and_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    let names: Vec<String> = (1..=7)
        .map(|i| format!("b{i}-2025010{i}T000000.000Z"))
        .collect();
    for name in &names {
        make_release(&layout, name);
    }
    let leftover = layout
        .releases_dir()
        .join(format!("{UNPACK_PREFIX}b8-1-abc"));
    fs::create_dir_all(leftover.join("half")).unwrap();
    switch_current(&layout, &layout.release_path(&names[1]))
        .await
        .unwrap();
    let protected = layout.release_path(&names[2]);

    let deleted = prune(&layout, 3, &[protected.as_path()]).await.unwrap();
    let expected: Vec<PathBuf> = [0, 3, 4, 5]
        .iter()
        .map(|&i| layout.release_path(&names[i]))
        .chain([leftover.clone()])
        .collect();
    assert_eq!(deleted, expected);
    let left: Vec<String> = layout
        .releases()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(left, [names[1].clone(), names[2].clone(), names[6].clone()]);
    assert!(!leftover.exists());

    // Nothing more to do; keep 0 still keeps the current release.
    assert!(prune(&layout, 3, &[]).await.unwrap().is_empty());
    let deleted = prune(&layout, 0, &[]).await.unwrap();
    assert_eq!(deleted.len(), 2);
    assert_eq!(layout.releases().await.unwrap().len(), 1);
    assert_eq!(layout.current().await.unwrap().unwrap().name, names[1]);
}
