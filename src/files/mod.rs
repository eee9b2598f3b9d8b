//! The upload file store rooted at `storage.root`.
