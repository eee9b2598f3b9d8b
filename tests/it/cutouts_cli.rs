//! `thumbnails cutouts draw`: alert cutouts drawn from files, no database.

use std::process::Stdio;

use tokio::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn draw() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_thumbnails"));
    c.stdin(Stdio::null())
        .kill_on_drop(true)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["cutouts", "draw"])
        .env("RUST_LOG", "off");
    c
}

#[tokio::test]
async fn cutouts_draw_an_avro_packet_and_report_bad_files() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let bad = out_dir.path().join("not_a_cutout.fits");
    std::fs::write(&bad, b"hello").expect("write");
    let avro = format!("{FIXTURES}/ztf-alerts/ZTF18aaxjdyr_1661382530015060001.avro");
    let lsst = format!("{FIXTURES}/lsst-synthetic/lsst_synthetic_rotpa30_science.fits");

    let out = draw()
        .arg(&avro)
        .arg(&lsst)
        .arg("--survey")
        .arg("LSST")
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 PNGs written, 0 failed"), "{stdout}");
    for ttype in ["new", "ref", "sub"] {
        let png = out_dir.path().join(format!("ZTF18aaxjdyr_{ttype}_ZTF.png"));
        let bytes = std::fs::read(&png).expect("PNG written");
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }
    assert!(out_dir
        .path()
        .join("lsst_synthetic_rotpa30_science.png")
        .exists());

    let out = draw()
        .arg(&avro)
        .arg(&bad)
        .arg("--out")
        .arg(out_dir.path())
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not_a_cutout.fits: not_fits: "), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 PNGs written, 1 failed"), "{stdout}");
}
