//! The processes one `kip` invocation runs on: one, or the ranks of an MPI
//! job (`mpirun -n R kip distill …`, binary built with `--features mpi`).

use kip_meta::{single_process, Ranks};

/// What must outlive every collective call (MPI's `Universe`: dropping it
/// finalizes MPI), and the ranks.
pub struct World {
    /// The ranks handed to the libraries.
    pub ranks: Ranks,
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl World {
    /// MPI's world when this process was started by an MPI launcher (and
    /// the binary has the `mpi` feature), else a single process.
    pub fn init() -> World {
        #[cfg(feature = "mpi")]
        if launched_by_mpi() {
            if let Some(universe) = mpi::initialize() {
                let ranks: Ranks = std::sync::Arc::new(mpi_ranks::MpiRanks::new(universe.world()));
                return World {
                    ranks,
                    _universe: Some(universe),
                };
            }
        }
        World {
            ranks: single_process(),
            #[cfg(feature = "mpi")]
            _universe: None,
        }
    }
}

/// Whether an MPI launcher started this process (Open MPI, MPICH/Hydra,
/// PMIx, Slurm's PMI all set one of these).
#[cfg(feature = "mpi")]
fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

#[cfg(feature = "mpi")]
mod mpi_ranks {
    use mpi::datatype::PartitionMut;
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::{Communicator, CommunicatorCollectives};

    /// [`kip_meta::Collective`] over `MPI_COMM_WORLD`.
    pub struct MpiRanks {
        world: SimpleCommunicator,
        rank: usize,
        size: usize,
    }

    impl MpiRanks {
        pub fn new(world: SimpleCommunicator) -> Self {
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            Self { world, rank, size }
        }
    }

    impl std::fmt::Debug for MpiRanks {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MpiRanks {{ rank: {}, size: {} }}", self.rank, self.size)
        }
    }

    // SAFETY: MPI is initialised with MPI_THREAD_SINGLE semantics and the
    // library calls the collective operations only from the thread that
    // runs the command (the runner's loop), never from rayon's workers;
    // the communicator handle itself is an immutable integer/pointer.
    unsafe impl Send for MpiRanks {}
    // SAFETY: as above: no two threads call into MPI at once.
    unsafe impl Sync for MpiRanks {}

    impl kip_meta::Collective for MpiRanks {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        fn all_gather(&self, local: &[f64], counts: &[usize], out: &mut [f64]) {
            let counts: Vec<i32> = counts
                .iter()
                .map(|&c| i32::try_from(c).expect("an MPI count fits in i32"))
                .collect();
            let displs: Vec<i32> = counts
                .iter()
                .scan(0i32, |acc, &c| {
                    let d = *acc;
                    *acc += c;
                    Some(d)
                })
                .collect();
            let mut part = PartitionMut::new(out, counts, displs);
            self.world.all_gather_varcount_into(local, &mut part);
        }
    }
}
