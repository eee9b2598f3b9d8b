//! The Rubin/LSST alert schemas compiled into the service
//! (`schemas/lsst/`, from lsst/alert_packet, GPL-3.0): the Confluent schema
//! id (major x 100 + minor) with the alert schema and the named types it
//! refers to.

/// One shipped schema version.
pub struct Shipped {
    pub id: u32,
    pub alert: &'static str,
    pub deps: &'static [&'static str],
}

/// lsst.v7_0 to lsst.v11_0, oldest first.
pub const SHIPPED: &[Shipped] = &[
    Shipped {
        id: 700,
        alert: include_str!("../../../schemas/lsst/7/0/lsst.v7_0.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/7/0/lsst.v7_0.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/7/0/lsst.v7_0.diaNondetectionLimit.avsc"),
            include_str!("../../../schemas/lsst/7/0/lsst.v7_0.diaObject.avsc"),
            include_str!("../../../schemas/lsst/7/0/lsst.v7_0.diaSource.avsc"),
            include_str!("../../../schemas/lsst/7/0/lsst.v7_0.ssObject.avsc"),
        ],
    },
    Shipped {
        id: 701,
        alert: include_str!("../../../schemas/lsst/7/1/lsst.v7_1.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/7/1/lsst.v7_1.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/7/1/lsst.v7_1.diaNondetectionLimit.avsc"),
            include_str!("../../../schemas/lsst/7/1/lsst.v7_1.diaObject.avsc"),
            include_str!("../../../schemas/lsst/7/1/lsst.v7_1.diaSource.avsc"),
            include_str!("../../../schemas/lsst/7/1/lsst.v7_1.ssObject.avsc"),
        ],
    },
    Shipped {
        id: 702,
        alert: include_str!("../../../schemas/lsst/7/2/lsst.v7_2.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/7/2/lsst.v7_2.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/7/2/lsst.v7_2.diaNondetectionLimit.avsc"),
            include_str!("../../../schemas/lsst/7/2/lsst.v7_2.diaObject.avsc"),
            include_str!("../../../schemas/lsst/7/2/lsst.v7_2.diaSource.avsc"),
            include_str!("../../../schemas/lsst/7/2/lsst.v7_2.ssObject.avsc"),
        ],
    },
    Shipped {
        id: 703,
        alert: include_str!("../../../schemas/lsst/7/3/lsst.v7_3.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/7/3/lsst.v7_3.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/7/3/lsst.v7_3.diaNondetectionLimit.avsc"),
            include_str!("../../../schemas/lsst/7/3/lsst.v7_3.diaObject.avsc"),
            include_str!("../../../schemas/lsst/7/3/lsst.v7_3.diaSource.avsc"),
            include_str!("../../../schemas/lsst/7/3/lsst.v7_3.ssObject.avsc"),
        ],
    },
    Shipped {
        id: 704,
        alert: include_str!("../../../schemas/lsst/7/4/lsst.v7_4.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/7/4/lsst.v7_4.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/7/4/lsst.v7_4.diaNondetectionLimit.avsc"),
            include_str!("../../../schemas/lsst/7/4/lsst.v7_4.diaObject.avsc"),
            include_str!("../../../schemas/lsst/7/4/lsst.v7_4.diaSource.avsc"),
            include_str!("../../../schemas/lsst/7/4/lsst.v7_4.ssObject.avsc"),
        ],
    },
    Shipped {
        id: 800,
        alert: include_str!("../../../schemas/lsst/8/0/lsst.v8_0.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/8/0/lsst.v8_0.MPCORB.avsc"),
            include_str!("../../../schemas/lsst/8/0/lsst.v8_0.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/8/0/lsst.v8_0.diaObject.avsc"),
            include_str!("../../../schemas/lsst/8/0/lsst.v8_0.diaSource.avsc"),
            include_str!("../../../schemas/lsst/8/0/lsst.v8_0.ssSource.avsc"),
        ],
    },
    Shipped {
        id: 900,
        alert: include_str!("../../../schemas/lsst/9/0/lsst.v9_0.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/9/0/lsst.v9_0.MPCORB.avsc"),
            include_str!("../../../schemas/lsst/9/0/lsst.v9_0.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/9/0/lsst.v9_0.diaObject.avsc"),
            include_str!("../../../schemas/lsst/9/0/lsst.v9_0.diaSource.avsc"),
            include_str!("../../../schemas/lsst/9/0/lsst.v9_0.ssSource.avsc"),
        ],
    },
    Shipped {
        id: 1000,
        alert: include_str!("../../../schemas/lsst/10/0/lsst.v10_0.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.diaObject.avsc"),
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.diaSource.avsc"),
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.mpc_orbits.avsc"),
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.ssObject.avsc"),
            include_str!("../../../schemas/lsst/10/0/lsst.v10_0.ssSource.avsc"),
        ],
    },
    Shipped {
        id: 1100,
        alert: include_str!("../../../schemas/lsst/11/0/lsst.v11_0.alert.avsc"),
        deps: &[
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.diaForcedSource.avsc"),
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.diaObject.avsc"),
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.diaSource.avsc"),
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.mpc_orbits.avsc"),
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.ssObject.avsc"),
            include_str!("../../../schemas/lsst/11/0/lsst.v11_0.ssSource.avsc"),
        ],
    },
];
