//! Opening a store: what survives a restart, what open-time repair cleans
//! up, and the errors for a locked or unusable store directory.

mod common;

use std::fs;

use common::{PIECE, Root, data, read_all, write_blob};
use shoal_core::Digest;
use shoal_storage::{Store, StoreConfig, StoreError};

#[test]
fn complete_blobs_manifests_and_tags_survive_reopen() {
    let root = Root::new();
    let bytes = data(PIECE + 9, 1);
    let manifest = br#"{"schemaVersion":2}"#;
    let md = Digest::sha256_of(manifest);
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let d = {
        let store = root.open();
        store.put_manifest(&md, mt, manifest, "docker.io").unwrap();
        store.set_tag("docker.io", "library/nginx", "1.27", &md, mt).unwrap();
        write_blob(&store, &bytes)
    };

    let store = root.open();
    assert_eq!(read_all(&store.open_blob(&d).unwrap().unwrap()), bytes);
    let m = store.get_manifest(&md).unwrap().unwrap();
    let (got_mt, got) = (m.media_type, m.bytes);
    assert_eq!((got_mt.as_str(), got.as_slice()), (mt, &manifest[..]));
    let tag = store.get_tag("docker.io", "library/nginx", "1.27").unwrap().unwrap();
    assert_eq!((tag.digest, tag.media_type.as_str()), (md, mt));
    assert!(store.get_tag("docker.io", "library/nginx", "1.28").unwrap().is_none());
    assert!(store.get_tag("ghcr.io", "library/nginx", "1.27").unwrap().is_none());
}

#[test]
fn set_tag_keeps_the_last_digest() {
    let root = Root::new();
    let store = root.open();
    let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
    store.set_tag("r", "repo", "t", &a, "x").unwrap();
    store.set_tag("r", "repo", "t", &b, "y").unwrap();
    let tag = store.get_tag("r", "repo", "t").unwrap().unwrap();
    assert_eq!((tag.digest, tag.media_type.as_str()), (b, "y"));
}

#[test]
fn orphan_files_and_missing_files_are_reconciled() {
    let root = Root::new();
    let (kept, lost) = {
        let store = root.open();
        (write_blob(&store, &data(10, 1)), write_blob(&store, &data(20, 2)))
    };
    let dir = root.path().join("blobs/sha256");
    let orphan = Digest::sha256_of(b"orphan");
    fs::write(dir.join(orphan.hex()), b"orphan").unwrap();
    fs::write(dir.join(format!("{}.partial", orphan.hex())), b"o").unwrap();
    fs::write(dir.join("tmp-junk"), b"junk").unwrap();
    fs::remove_file(root.complete_path(&lost)).unwrap();

    let store = root.open();
    let names: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, vec![kept.hex().to_owned()]);
    assert!(store.blob_info(&lost).unwrap().is_none());
    assert!(store.open_blob(&kept).unwrap().is_some());
    assert_eq!(store.usage().unwrap().complete_blobs, 1);
}

#[test]
fn interrupted_completion_is_finished_by_the_record() {
    let root = Root::new();
    let bytes = data(PIECE, 3);
    let d = {
        let store = root.open();
        write_blob(&store, &bytes)
    };
    // As if the rename had not reached the disk: the record says complete.
    fs::rename(root.complete_path(&d), root.partial_path(&d)).unwrap();
    let store = root.open();
    assert!(root.complete_path(&d).exists());
    assert_eq!(read_all(&store.open_blob(&d).unwrap().unwrap()), bytes);
}

#[test]
fn complete_file_of_wrong_length_is_dropped() {
    let root = Root::new();
    let d = {
        let store = root.open();
        write_blob(&store, &data(100, 4))
    };
    fs::write(root.complete_path(&d), b"short").unwrap();
    let store = root.open();
    assert!(store.blob_info(&d).unwrap().is_none());
    assert!(!root.complete_path(&d).exists());
}

#[test]
fn vanished_complete_file_is_forgotten_at_open_blob() {
    let root = Root::new();
    let store = root.open();
    let d = write_blob(&store, &data(10, 5));
    fs::remove_file(root.complete_path(&d)).unwrap();
    assert!(store.open_blob(&d).unwrap().is_none());
    assert!(store.blob_info(&d).unwrap().is_none());
    store.begin_write(&d, 10).expect("it can be fetched again");
}

#[test]
fn second_open_of_one_root_is_refused_as_locked() {
    let root = Root::new();
    let _first = root.open();
    let err = Store::open(root.config()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("is another shoal daemon using"), "{msg}");
    assert!(msg.contains(&root.path().display().to_string()), "{msg}");
}

#[test]
fn root_that_is_a_file_is_not_writable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let err = Store::open(StoreConfig::new(&file)).unwrap_err();
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    assert!(err.to_string().contains(&file.display().to_string()));
}

#[test]
fn bad_watermarks_are_refused() {
    let root = Root::new();
    let mut cfg = root.config();
    cfg.low_watermark = 0.95;
    let err = Store::open(cfg).unwrap_err();
    assert!(matches!(err, StoreError::InvalidConfig(_)), "{err}");
}

#[test]
fn store_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
    check::<shoal_storage::BlobReader>();
    fn send<T: Send>() {}
    send::<shoal_storage::BlobWriter>();
}
