//! SeaORM entities for the subset of SkyPortal's tables this service uses.

pub mod obj {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "objs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub ra: Option<f64>,
        pub dec: Option<f64>,
        pub is_roid: Option<bool>,
        pub internal_key: String,
        pub created_at: DateTime,
        pub modified: DateTime,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_many = "super::thumbnail::Entity")]
        Thumbnail,
    }

    impl Related<super::thumbnail::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Thumbnail.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod thumbnail {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;

    use crate::surveys::ThumbnailType;

    /// The Postgres enum `thumbnail_types`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
    #[sea_orm(rs_type = "String", db_type = "Enum", enum_name = "thumbnail_types")]
    #[serde(rename_all = "snake_case")]
    pub enum DbType {
        #[sea_orm(string_value = "new")]
        New,
        #[sea_orm(string_value = "ref")]
        Ref,
        #[sea_orm(string_value = "sub")]
        Sub,
        #[sea_orm(string_value = "sdss")]
        Sdss,
        #[sea_orm(string_value = "dr8")]
        Dr8,
        #[sea_orm(string_value = "ls")]
        Ls,
        #[sea_orm(string_value = "ps1")]
        Ps1,
        #[sea_orm(string_value = "sm")]
        Sm,
        #[sea_orm(string_value = "hst")]
        Hst,
        #[sea_orm(string_value = "chandra")]
        Chandra,
        #[sea_orm(string_value = "jwst")]
        Jwst,
        #[sea_orm(string_value = "new_gz")]
        NewGz,
        #[sea_orm(string_value = "ref_gz")]
        RefGz,
        #[sea_orm(string_value = "sub_gz")]
        SubGz,
    }

    impl From<ThumbnailType> for DbType {
        fn from(t: ThumbnailType) -> Self {
            match t {
                ThumbnailType::New => Self::New,
                ThumbnailType::Ref => Self::Ref,
                ThumbnailType::Sub => Self::Sub,
                ThumbnailType::Sdss => Self::Sdss,
                ThumbnailType::Dr8 => Self::Dr8,
                ThumbnailType::Ls => Self::Ls,
                ThumbnailType::Ps1 => Self::Ps1,
                ThumbnailType::Sm => Self::Sm,
                ThumbnailType::Hst => Self::Hst,
                ThumbnailType::Chandra => Self::Chandra,
                ThumbnailType::Jwst => Self::Jwst,
                ThumbnailType::NewGz => Self::NewGz,
                ThumbnailType::RefGz => Self::RefGz,
                ThumbnailType::SubGz => Self::SubGz,
            }
        }
    }

    impl From<DbType> for ThumbnailType {
        fn from(t: DbType) -> Self {
            match t {
                DbType::New => Self::New,
                DbType::Ref => Self::Ref,
                DbType::Sub => Self::Sub,
                DbType::Sdss => Self::Sdss,
                DbType::Dr8 => Self::Dr8,
                DbType::Ls => Self::Ls,
                DbType::Ps1 => Self::Ps1,
                DbType::Sm => Self::Sm,
                DbType::Hst => Self::Hst,
                DbType::Chandra => Self::Chandra,
                DbType::Jwst => Self::Jwst,
                DbType::NewGz => Self::NewGz,
                DbType::RefGz => Self::RefGz,
                DbType::SubGz => Self::SubGz,
            }
        }
    }

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
    #[sea_orm(table_name = "thumbnails")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub created_at: DateTime,
        pub modified: DateTime,
        #[sea_orm(column_name = "type")]
        #[serde(rename = "type")]
        pub ttype: Option<DbType>,
        pub file_uri: Option<String>,
        pub public_url: Option<String>,
        pub origin: Option<String>,
        pub survey: Option<String>,
        pub is_grayscale: Option<bool>,
        pub obj_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(
            belongs_to = "super::obj::Entity",
            from = "Column::ObjId",
            to = "super::obj::Column::Id",
            on_delete = "Cascade"
        )]
        Obj,
    }

    impl Related<super::obj::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Obj.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}
