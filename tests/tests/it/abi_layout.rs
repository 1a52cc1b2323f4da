use xplugin_tests::build;

#[test]
fn smoke() {
    let p = build::cdylib_path("plugindemo_controller");
    eprintln!("{}", p.display());
    assert!(p.is_file());
}
