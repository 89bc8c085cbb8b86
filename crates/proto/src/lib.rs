//! Generated code for Concord's gRPC contract (`proto/`), and the file descriptor set
//! that server reflection serves. Nothing else lives here: conversions between wire and
//! domain types belong to `concord-node`.

pub mod common {
    pub mod v1 {
        tonic::include_proto!("concord.common.v1");
    }
}
pub mod cluster {
    pub mod v1 {
        tonic::include_proto!("concord.cluster.v1");
    }
}
pub mod item {
    pub mod v1 {
        tonic::include_proto!("concord.item.v1");
    }
}
pub mod entity {
    pub mod v1 {
        tonic::include_proto!("concord.entity.v1");
    }
}
pub mod credit {
    pub mod v1 {
        tonic::include_proto!("concord.credit.v1");
    }
}
pub mod case {
    pub mod v1 {
        tonic::include_proto!("concord.case.v1");
    }
}
pub mod inspection {
    pub mod v1 {
        tonic::include_proto!("concord.inspection.v1");
    }
}
pub mod sharing {
    pub mod v1 {
        tonic::include_proto!("concord.sharing.v1");
    }
}
pub mod watch {
    pub mod v1 {
        tonic::include_proto!("concord.watch.v1");
    }
}
pub mod raft {
    pub mod v1 {
        tonic::include_proto!("concord.raft.v1");
    }
}

/// Descriptor set of every Concord service, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("concord_descriptor");
