//! Runs spread over ranks, without MPI: ranks simulated by threads that
//! exchange through shared memory. The arithmetic depends on the shard
//! count only, so any number of ranks gives the single process's bits.

use std::sync::{Arc, Barrier, Mutex};

use kip_data::DataSpec;
use kip_kernels::points;
use kip_meta::{
    evaluate_support, evaluate_support_on, label_solve, label_solve_on, Collective, Kip, KipParams, KipState, Ranks,
};

/// `size` ranks in one process, one thread each.
#[derive(Debug)]
struct ThreadRanks {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

impl Collective for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_gather(&self, local: &[f64], counts: &[usize], out: &mut [f64]) {
        assert_eq!(counts[self.rank], local.len());
        self.shared.slots.lock().unwrap()[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all: Vec<f64> = self.shared.slots.lock().unwrap().concat();
        out.copy_from_slice(&all);
        // Nobody refills a slot before everyone has read them all.
        self.shared.barrier.wait();
    }
}

fn thread_ranks(size: usize) -> Vec<Ranks> {
    let shared = Arc::new(Shared {
        barrier: Barrier::new(size),
        slots: Mutex::new(vec![Vec::new(); size]),
    });
    (0..size)
        .map(|rank| {
            Arc::new(ThreadRanks {
                rank,
                size,
                shared: shared.clone(),
            }) as Ranks
        })
        .collect()
}

fn params(kernels: &[&str], shards: usize) -> KipParams {
    KipParams {
        kernels: kernels.iter().map(|s| s.to_string()).collect(),
        n_support: 10,
        n_target: 300,
        steps: 12,
        learn_labels: true,
        target_shards: shards,
        ..KipParams::default()
    }
}

/// The state after `steps` steps, and the test evaluation, of `size`
/// ranks (each rank's result must be the same).
fn run(p: &KipParams, size: usize) -> (KipState, kip_krr::Eval) {
    let data = DataSpec::default().load().unwrap();
    let x_test = data.test.to_matrix();
    let results: Vec<(KipState, kip_krr::Eval)> = std::thread::scope(|s| {
        let handles: Vec<_> = thread_ranks(size)
            .into_iter()
            .map(|ranks| {
                let (p, train, x_test, labels) = (p.clone(), data.train.clone(), &x_test, data.test.labels());
                s.spawn(move || {
                    let mut kip = Kip::new(p.check().unwrap(), train).unwrap().on_ranks(ranks);
                    for _ in 0..kip.params().params().steps {
                        kip.step().unwrap();
                    }
                    let eval = kip.evaluate(points(x_test), labels, 50).unwrap();
                    (kip.state().clone(), eval)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results[1..] {
        assert!(same_state(&results[0].0, &r.0), "ranks disagree");
        assert_eq!(results[0].1, r.1);
    }
    results.into_iter().next().unwrap()
}

fn same_state(a: &KipState, b: &KipState) -> bool {
    let bits = |m: &nalgebra::DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    a.step == b.step && bits(&a.x_s) == bits(&b.x_s) && bits(&a.y_s) == bits(&b.y_s) && a.labels == b.labels
}

#[test]
fn any_number_of_ranks_gives_the_single_process_bits() {
    for kernels in [&["fc1-ntk"][..], &["fc2-nngp", "rbf"][..]] {
        let p = params(kernels, 4);
        let (one, eval_one) = run(&p, 1);
        for size in [2, 3, 5] {
            let (many, eval_many) = run(&p, size);
            assert!(same_state(&one, &many), "{kernels:?}: {size} ranks differ from one");
            assert_eq!(eval_one, eval_many, "{kernels:?}: evaluation on {size} ranks");
        }
    }
}

#[test]
fn image_kernels_shard_too() {
    let p = KipParams {
        n_target: 60,
        steps: 3,
        ..params(&["convvec1-ntk"], 3)
    };
    let (one, _) = run(&p, 1);
    let (two, _) = run(&p, 2);
    assert!(same_state(&one, &two));
}

#[test]
fn shards_change_only_rounding() {
    let (one, _) = run(&params(&["fc1-ntk"], 1), 1);
    let (four, _) = run(&params(&["fc1-ntk"], 4), 1);
    let diff = (&one.x_s - &four.x_s).abs().max();
    let scale = one.x_s.abs().max();
    assert!(
        diff <= 1e-9 * scale,
        "shard count moved the run by {diff:e} (scale {scale})"
    );
}

#[test]
fn evaluation_on_ranks_equals_one_process() {
    let data = DataSpec::default().load().unwrap();
    let sample = data.train.subset(&(0..20).collect::<Vec<_>>());
    let (x_s, x_t) = (sample.to_matrix(), data.test.to_matrix());
    let y_s = kip_data::one_hot(sample.labels(), 10, true);
    let kernel = kip_kernels::KernelSpec::fc_ntk(2).build();
    let one = evaluate_support(&kernel, points(&x_s), &y_s, 1e-6, points(&x_t), data.test.labels(), 64).unwrap();
    let evals: Vec<kip_krr::Eval> = std::thread::scope(|s| {
        let hs: Vec<_> = thread_ranks(3)
            .into_iter()
            .map(|r| {
                let (x_s, y_s, x_t, labels, kernel) = (&x_s, &y_s, &x_t, data.test.labels(), &kernel);
                s.spawn(move || {
                    evaluate_support_on(&*r, kernel, points(x_s), y_s, 1e-6, points(x_t), labels, 64).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(evals.iter().all(|e| *e == one), "{evals:?} vs {one:?}");
}

#[test]
fn label_solve_on_ranks_equals_one_process() {
    let data = DataSpec::default().load().unwrap();
    let x_s = data.train.subset(&(0..30).collect::<Vec<_>>()).to_matrix();
    let kernel = kip_kernels::KernelSpec::fc_ntk(1).build();
    let one = label_solve(&kernel, points(&x_s), &data.train, 1e-6, 100).unwrap();
    let all: Vec<nalgebra::DMatrix<f64>> = std::thread::scope(|s| {
        let hs: Vec<_> = thread_ranks(3)
            .into_iter()
            .map(|r| {
                let (x_s, train, kernel) = (&x_s, &data.train, &kernel);
                s.spawn(move || label_solve_on(&*r, kernel, points(x_s), train, 1e-6, 100).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bits = |m: &nalgebra::DMatrix<f64>| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(all.iter().all(|m| bits(m) == bits(&one)));
}

#[test]
fn a_failing_rank_stops_every_rank() {
    // Rank 1 gets non-finite test points: every rank returns an error
    // (none waits forever), rank 1 its own, the others naming rank 1.
    let data = DataSpec::default().load().unwrap();
    let sample = data.train.subset(&(0..20).collect::<Vec<_>>());
    let x_s = sample.to_matrix();
    let y_s = kip_data::one_hot(sample.labels(), 10, true);
    let kernel = kip_kernels::KernelSpec::fc_ntk(1).build();
    let errors: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = thread_ranks(3)
            .into_iter()
            .map(|r| {
                let mut x_t = data.test.to_matrix();
                if r.rank() == 1 {
                    x_t.fill(f64::NAN);
                }
                let (x_s, y_s, labels, kernel) = (&x_s, &y_s, data.test.labels(), &kernel);
                s.spawn(move || {
                    evaluate_support_on(&*r, kernel, points(x_s), y_s, 1e-6, points(&x_t), labels, 64)
                        .unwrap_err()
                        .to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(errors[1].contains("non-finite"), "{}", errors[1]);
    for e in [&errors[0], &errors[2]] {
        assert!(e.contains("rank 1 failed") && e.contains("non-finite"), "{e}");
    }
}
