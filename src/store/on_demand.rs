//! The on-demand surveys' one-row write (`sm`, `hst`, `chandra`, `jwst`).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Statement,
    TransactionTrait,
};

use super::entities::thumbnail;
use super::outbox::{self, Pending};
use crate::bus::{ORIGIN_UPLOAD, ROUTING_THUMBNAIL_STORED};
use crate::surveys::{is_fetchable, ThumbnailType};

/// An on-demand row to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDemandRow {
    pub obj_id: String,
    pub ttype: ThumbnailType,
    pub public_url: String,
    /// `None` for a placeholder (the attempt failed).
    pub is_grayscale: Option<bool>,
}

impl OnDemandRow {
    /// A failed attempt: an existing row with a real image URL is kept
    /// rather than replaced by the placeholder.
    fn keeps_image(&self) -> bool {
        self.is_grayscale.is_none()
    }
}

/// What [`store_on_demand`] did.
#[derive(Debug)]
pub enum OnDemandWrite {
    Stored(thumbnail::Model, Pending),
    /// The stored row has an image and this attempt failed: unchanged.
    Kept(thumbnail::Model),
    /// The object has an uploaded thumbnail of this type: left alone.
    UploadExists,
}

/// Whether the object has an uploaded thumbnail of this type (checked
/// before fetching anything; [`store_on_demand`] checks again under its
/// lock).
pub async fn has_upload(
    db: &DatabaseConnection,
    obj_id: &str,
    ttype: ThumbnailType,
) -> Result<bool, DbErr> {
    let db_type: thumbnail::DbType = ttype.into();
    Ok(thumbnail::Entity::find()
        .filter(thumbnail::Column::ObjId.eq(obj_id))
        .filter(thumbnail::Column::Ttype.eq(db_type))
        .filter(thumbnail::Column::Survey.is_null())
        .filter(
            sea_orm::Condition::any()
                .add(thumbnail::Column::Origin.eq(ORIGIN_UPLOAD))
                .add(thumbnail::Column::FileUri.is_not_null()),
        )
        .one(db)
        .await?
        .is_some())
}

/// Inserts or rewrites the object's row of this type (the one without a
/// `survey` label), with its `thumbnail.stored` event, in one transaction.
/// An advisory lock on `(obj_id, type)` orders concurrent requests, so
/// this does not depend on the shape of the table's unique index.
pub async fn store_on_demand(
    db: &DatabaseConnection,
    row: &OnDemandRow,
) -> Result<OnDemandWrite, DbErr> {
    let now = Utc::now().naive_utc();
    let db_type: thumbnail::DbType = row.ttype.into();
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))",
        [row.obj_id.as_str().into(), row.ttype.as_str().into()],
    ))
    .await?;
    let existing = thumbnail::Entity::find()
        .filter(thumbnail::Column::ObjId.eq(row.obj_id.as_str()))
        .filter(thumbnail::Column::Ttype.eq(db_type))
        .filter(thumbnail::Column::Survey.is_null())
        .order_by_asc(thumbnail::Column::Id)
        .one(&txn)
        .await?;
    let model = match existing {
        Some(m) if m.origin.as_deref() == Some(ORIGIN_UPLOAD) || m.file_uri.is_some() => {
            return Ok(OnDemandWrite::UploadExists);
        }
        Some(m) if row.keeps_image() && m.public_url.as_deref().is_some_and(is_fetchable) => {
            return Ok(OnDemandWrite::Kept(m));
        }
        Some(m) => {
            let mut am = m.into_active_model();
            am.public_url = Set(Some(row.public_url.clone()));
            am.is_grayscale = Set(row.is_grayscale);
            am.modified = Set(now);
            am.update(&txn).await?
        }
        None => {
            thumbnail::ActiveModel {
                created_at: Set(now),
                modified: Set(now),
                ttype: Set(Some(db_type)),
                file_uri: Set(None),
                public_url: Set(Some(row.public_url.clone())),
                origin: Set(None),
                survey: Set(None),
                is_grayscale: Set(row.is_grayscale),
                obj_id: Set(row.obj_id.clone()),
                ..Default::default()
            }
            .insert(&txn)
            .await?
        }
    };
    let event =
        outbox::enqueue_pending(&txn, ROUTING_THUMBNAIL_STORED, outbox::stored_event(&model))
            .await?;
    txn.commit().await?;
    Ok(OnDemandWrite::Stored(model, event))
}
