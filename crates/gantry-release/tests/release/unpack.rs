//! Unpacking real and malicious archives.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gantry_release::{unpack, ServiceLayout, UNPACK_PREFIX};

use crate::{write_archive, Ent};

fn leftovers(layout: &ServiceLayout) -> Vec<String> {
    fs::read_dir(layout.releases_dir())
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(UNPACK_PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn unpacks_files_dirs_modes_and_inner_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar.gz");
    write_archive(
        &archive,
        &[
            Ent::Dir("./"),
            Ent::Dir("./bin/"),
            Ent::File("./bin/run", b"#!/bin/sh\necho hi\n", 0o4755),
            Ent::File("app/config.toml", b"x = 1\n", 0o644),
            Ent::File("app/deep/er/file", b"deep", 0o600),
            Ent::Dir("ro/"),
            Ent::Symlink("ro/up", "../app/config.toml"),
            Ent::Symlink("latest", "app/deep"),
            Ent::Symlink("self", "."),
        ],
    );
    let layout = ServiceLayout::new(&tmp.path().join("root"), "shop").unwrap();
    let release = unpack(&archive, &layout, "b1-20250101T000000.000Z", 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        release,
        layout.releases_dir().join("b1-20250101T000000.000Z")
    );
    assert_eq!(
        fs::read_to_string(release.join("bin/run")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    let mode = fs::metadata(release.join("bin/run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755, "set-uid dropped, exec kept");
    assert_eq!(
        fs::read_to_string(release.join("ro/up")).unwrap(),
        "x = 1\n"
    );
    assert_eq!(
        fs::read_to_string(release.join("latest/er/file")).unwrap(),
        "deep"
    );
    assert_eq!(
        fs::read_link(release.join("latest")).unwrap(),
        Path::new("app/deep")
    );
    assert!(leftovers(&layout).is_empty());
    let releases = layout.releases().await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].build_id, "b1");

    // The same name again is refused, and the existing release is left alone.
    let err = unpack(&archive, &layout, "b1-20250101T000000.000Z", 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert!(release.join("bin/run").exists());
    assert!(leftovers(&layout).is_empty());
}

#[tokio::test]
async fn refuses_malicious_archives_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // (entries, the entry the error must name, a reason substring)
    let cases: Vec<(Vec<Ent<'_>>, &str, &str)> = vec![
        (
            vec![Ent::File("/tmp/evil", b"x", 0o644)],
            "/tmp/evil",
            "absolute",
        ),
        (vec![Ent::File("../evil", b"x", 0o644)], "../evil", "'..'"),
        (
            vec![
                Ent::File("ok", b"x", 0o644),
                Ent::File("a/../../evil", b"x", 0o644),
            ],
            "a/../../evil",
            "'..'",
        ),
        (vec![Ent::Symlink("etc", "/etc")], "etc", "absolute"),
        (vec![Ent::Symlink("up", "..")], "up", "leaves the release"),
        (
            vec![Ent::Symlink("d/up", "../../outside")],
            "d/up",
            "leaves the release",
        ),
        (
            vec![Ent::Symlink("s", "."), Ent::Symlink("l", "s/..")],
            "l",
            "'..' after a name",
        ),
        (
            vec![Ent::Symlink("l", "sub"), Ent::File("l/x", b"x", 0o644)],
            "l/x",
            "below a symlink",
        ),
        (
            vec![Ent::File("a", b"x", 0o644), Ent::HardLink("h", "a")],
            "h",
            "hard links",
        ),
        (vec![Ent::Fifo("p")], "p", "fifo"),
        (vec![Ent::CharDevice("null")], "null", "device"),
    ];
    let layout = ServiceLayout::new(&tmp.path().join("root"), "shop").unwrap();
    for (i, (entries, entry, reason)) in cases.into_iter().enumerate() {
        let archive = tmp.path().join(format!("evil{i}.tar.gz"));
        write_archive(&archive, &entries);
        let name = format!("evil-{i}");
        let err = unpack(&archive, &layout, &name, 1 << 20)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("'{entry}'")) && err.contains(reason),
            "case {i}: {err}"
        );
        assert!(!layout.releases_dir().join(&name).exists(), "case {i}");
        assert!(leftovers(&layout).is_empty(), "case {i}");
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!tmp.path().join("evil").exists());
}

#[tokio::test]
async fn caps_unpacked_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    let zeros = vec![0u8; 4 << 20];
    // One big file, and many files that add up.
    let cases: Vec<Vec<Ent<'_>>> = vec![
        vec![Ent::File("bomb", &zeros, 0o644)],
        (0..8)
            .map(|i| {
                Ent::File(
                    ["a", "b", "c", "d", "e", "f", "g", "h"][i],
                    &zeros[..300_000],
                    0o644,
                )
            })
            .collect(),
    ];
    for (i, entries) in cases.into_iter().enumerate() {
        let archive = tmp.path().join(format!("bomb{i}.tar.gz"));
        write_archive(&archive, &entries);
        assert!(fs::metadata(&archive).unwrap().len() < 100_000);
        let err = unpack(&archive, &layout, "bomb-1", 2 << 20)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("more than the limit of 2097152 bytes"),
            "{err}"
        );
        assert!(!layout.releases_dir().join("bomb-1").exists());
        assert!(leftovers(&layout).is_empty());
    }
}

#[tokio::test]
async fn refuses_corrupt_archives_and_bad_names() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = ServiceLayout::new(tmp.path(), "shop").unwrap();
    let archive = tmp.path().join("junk.tar.gz");
    fs::write(&archive, b"this is not gzip").unwrap();
    let err = unpack(&archive, &layout, "junk-1", 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(err, gantry_release::Error::Archive { .. }),
        "{err}"
    );
    assert!(leftovers(&layout).is_empty());

    for bad in ["../x-1", ".hidden-1", "a/b-1", ""] {
        assert!(
            unpack(&archive, &layout, bad, 1 << 20).await.is_err(),
            "{bad}"
        );
    }
    let err = unpack(&tmp.path().join("missing.tar.gz"), &layout, "m-1", 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open"), "{err}");
}
