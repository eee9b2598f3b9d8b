//! The preview pages (issue 23): over plain HTTP ([`pages`]) and in a real
//! headless Chromium ([`browser`]), on a scene with uploads, ZTF and LSST
//! stamps, archival rows and placeholders ([`scene`], which the dashboard
//! test reuses for its short run).

pub mod browser;
mod dead_letters;
mod pages;
pub mod scene;
