//! `kip.distill`, `kip.load_run` and `kip.load_dataset`: the library's run
//! driver ([`kip_meta::Runner`]) on named datasets or numpy arrays.

use std::ops::ControlFlow;
use std::path::PathBuf;

use kip_data::{DataSpec, Dataset, ImageShape, Prepared, Split, SupportSet, IN_MEMORY_DATASET};
use kip_kernels::KernelSpec;
use kip_meta::{
    default_target_batch, AdamParams, Init, KipParams, MetricsLine, Observer, Resume, RunConfig, RunDir, RunOutcome,
    RunStart, Runner, SUMMARY,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{class_ids, points_to_py, vec_to_py, PointsArg};
use crate::errors::{data_err, meta_err, require_dir, value_err};

/// A KIP run's result: the support set and the metrics log.
#[pyclass(name = "Run", module = "kip", frozen, get_all)]
pub struct PyRun {
    /// Support images in model space (what the kernel sees), float64.
    x: Py<PyAny>,
    /// Support images mapped back to the original pixel scale.
    images: Py<PyAny>,
    /// Label vectors ``(n, C)`` (learned when ``learn_labels``).
    y: Py<PyAny>,
    /// Class id each support image was drawn from ``(n,)``.
    labels: Py<PyAny>,
    /// Class names, index = class id.
    class_names: Vec<String>,
    /// The metrics log: one dict per line (step 0 is the start).
    metrics: Py<PyAny>,
    /// ``summary.json`` of a finished run, else ``None``.
    summary: Py<PyAny>,
    /// The run directory (``None`` when ``out`` was not given).
    path: Option<PathBuf>,
    /// Whether the run stopped early (the callback returned ``True``).
    stopped: bool,
    /// Steps done.
    step: usize,
    /// Support images.
    support: usize,
}

#[pymethods]
impl PyRun {
    fn __repr__(&self) -> String {
        let path = self
            .path
            .as_ref()
            .map_or("None".into(), |p| format!("'{}'", p.display()));
        let stopped = if self.stopped { "True" } else { "False" };
        format!(
            "Run(step={}, support={}, stopped={stopped}, path={path})",
            self.step, self.support
        )
    }
}

fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// The result of the run in `dir` as it is on disk, its points shaped
/// `(n, *dims)`.
fn run_result(py: Python<'_>, dir: &RunDir, dims: &[usize], path: Option<PathBuf>, stopped: bool) -> PyResult<PyRun> {
    let s: SupportSet = dir.read_support().map_err(meta_err)?;
    let metrics = dir.read_metrics().map_err(meta_err)?;
    let step = metrics.last().map_or(0, |m| m.step);
    let summary = if dir.file(SUMMARY).is_file() && !stopped {
        let v: serde_json::Value = dir.read_json(SUMMARY).map_err(meta_err)?;
        json_to_py(py, &v.to_string())?.unbind()
    } else {
        py.None()
    };
    let metrics_json = serde_json::to_string(&metrics).map_err(value_err)?;
    let labels: Vec<i64> = s.labels.iter().map(|&l| l as i64).collect();
    Ok(PyRun {
        x: points_to_py(py, &s.x_model, dims).into_any().unbind(),
        images: points_to_py(py, &s.x_pixels, dims).into_any().unbind(),
        y: crate::arrays::matrix_to_py(py, s.y.clone()).into_any().unbind(),
        labels: vec_to_py(py, labels).into_any().unbind(),
        class_names: s.class_names.clone(),
        metrics: json_to_py(py, &metrics_json)?.unbind(),
        summary,
        path,
        stopped,
        step,
        support: s.labels.len(),
    })
}

fn shape_dims(shape: ImageShape) -> Vec<usize> {
    vec![shape.h, shape.w, shape.c]
}

/// Load a run directory written by ``kip distill`` or :func:`kip.distill`.
#[pyfunction]
pub fn load_run(py: Python<'_>, path: PathBuf) -> PyResult<PyRun> {
    require_dir(&path, "run directory")?;
    let dir = RunDir::open(&path).map_err(meta_err)?;
    let in_memory = dir.read_config().map_err(meta_err)?.data().dataset == IN_MEMORY_DATASET;
    let shape = dir.read_support().map_err(meta_err)?.shape;
    let stopped = !dir.file(SUMMARY).is_file();
    run_result(py, &dir, &result_dims(in_memory, shape), Some(path), stopped)
}

/// A dataset kip can load (``"digits"`` is embedded; ``"mnist"``,
/// ``"fashion-mnist"``, ``"cifar10"`` are read from ``data_dir`` or
/// ``$KIP_DATA_DIR``; ``"npz:PATH"``), as raw pixels:
/// ``((x_train, y_train), (x_test, y_test))`` with float32 images
/// ``(n, h, w, c)`` and int64 class ids.
#[pyfunction]
#[pyo3(signature = (name = "digits", data_dir = None))]
#[allow(clippy::type_complexity)]
pub fn load_dataset(
    py: Python<'_>,
    name: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<((Py<PyAny>, Py<PyAny>), (Py<PyAny>, Py<PyAny>))> {
    let split = py
        .detach(|| kip_data::resolve(name, data_dir.as_deref()))
        .map_err(data_err)?;
    let arrays = |d: &Dataset| -> (Py<PyAny>, Py<PyAny>) {
        let s = d.shape();
        let mut shape = vec![d.len()];
        shape.extend(shape_dims(s));
        let x = numpy::ndarray::ArrayD::from_shape_vec(numpy::ndarray::IxDyn(&shape), d.pixels().to_vec())
            .expect("pixels of the dataset's shape");
        let labels: Vec<i64> = d.labels().iter().map(|&l| l as i64).collect();
        (
            numpy::IntoPyArray::into_pyarray(x, py).into_any().unbind(),
            vec_to_py(py, labels).into_any().unbind(),
        )
    };
    Ok((arrays(&split.train), arrays(&split.test)))
}

/// Watches a run from Python: Ctrl-C and the user's callback.
struct PyObserver {
    callback: Option<Py<PyAny>>,
    /// The exception that stopped the run (KeyboardInterrupt, or one the
    /// callback raised): raised once the checkpoint is written.
    error: Option<PyErr>,
}

impl PyObserver {
    fn poll(&mut self, line: Option<&MetricsLine>) -> ControlFlow<()> {
        Python::attach(|py| match self.call(py, line) {
            Ok(true) => ControlFlow::Break(()),
            Ok(false) => ControlFlow::Continue(()),
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        })
    }

    /// Whether to stop: pending signals (Ctrl-C raises here), then the
    /// callback's answer.
    fn call(&self, py: Python<'_>, line: Option<&MetricsLine>) -> PyResult<bool> {
        py.check_signals()?;
        let (Some(cb), Some(line)) = (&self.callback, line) else {
            return Ok(false);
        };
        let info = json_to_py(py, &serde_json::to_string(line).map_err(value_err)?)?;
        cb.call1(py, (info,))?.bind(py).is_truthy()
    }
}

impl Observer for PyObserver {
    fn started(&mut self, _start: &RunStart<'_>) -> ControlFlow<()> {
        self.poll(None)
    }

    fn step(&mut self, line: &MetricsLine) -> ControlFlow<()> {
        self.poll(Some(line))
    }
}

/// Points `x` and one class id per point `y` (arguments `nx`, `ny`).
fn labelled<'py>(
    x: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    nx: &str,
    ny: &str,
) -> PyResult<(PointsArg<'py>, Vec<usize>)> {
    let (points, ids) = (PointsArg::extract(x, nx)?, class_ids(y, ny)?);
    if ids.len() != points.n {
        return Err(PyValueError::new_err(format!(
            "{ny}: {} labels for {} images in {nx}",
            ids.len(),
            points.n
        )));
    }
    Ok((points, ids))
}

/// Numpy arrays as a split: training images and, unless the test set is
/// held out, test images.
fn array_split(
    x: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    test: Option<(&Bound<'_, PyAny>, &Bound<'_, PyAny>)>,
    class_names: Option<Vec<String>>,
) -> PyResult<(Split, Vec<usize>)> {
    let (xt, yt) = labelled(x, y, "x", "y")?;
    let shape = xt.image_shape().unwrap_or(ImageShape::new(1, xt.d, 1));
    let test = match test {
        Some((xs, ys)) => {
            let (a, l) = labelled(xs, ys, "x_test", "y_test")?;
            crate::kernel::same_dims(&xt, &a, "x", "x_test")?;
            Some((a, l))
        }
        None => None,
    };
    let max = yt
        .iter()
        .chain(test.iter().flat_map(|t| t.1.iter()))
        .max()
        .copied()
        .unwrap_or(0);
    if class_names.is_none() {
        // Classes are 0..=max: one that no training image has would leave
        // nothing to draw its support images and targets from.
        let mut seen = vec![false; max + 1];
        yt.iter().for_each(|&c| seen[c] = true);
        if let Some(gap) = seen.iter().position(|s| !s) {
            let missing = seen.iter().filter(|s| !**s).count();
            return Err(PyValueError::new_err(format!(
                "y: class ids run up to {max}, but {missing} of the classes 0..={max} have no training image (the first: {gap}); number the classes 0..C-1, or give class_names to declare empty ones"
            )));
        }
    }
    let names = class_names.unwrap_or_else(|| (0..=max).map(|c| c.to_string()).collect());
    let build = |p: &PointsArg<'_>, l: Vec<usize>, what: &str| {
        let pixels = p.to_vec().into_iter().map(|v| v as f32).collect();
        Dataset::new(shape, pixels, l, names.clone()).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))
    };
    let train = build(&xt, yt, "x, y")?;
    let test = match test {
        Some((a, l)) => build(&a, l, "x_test, y_test")?,
        // Held out of the training images by DataSpec::prepare.
        None => train.subset(&[0]),
    };
    Ok((
        Split {
            train,
            test,
            notes: vec![],
        },
        xt.dims.clone(),
    ))
}

/// Everything `kip.distill` takes besides the data and the run's place.
pub struct DistillOptions {
    pub kip: KipParams,
    pub target_batch: Option<usize>,
    pub eval_every: usize,
    pub checkpoint_every: usize,
    pub eval_block: usize,
    /// Keep the best-on-validation set in `best/` (`keep_best="val"`).
    pub keep_best: bool,
}

/// Where the data of a `kip.distill` call comes from.
pub struct DataArgs<'a, 'py> {
    pub x: Option<&'a Bound<'py, PyAny>>,
    pub y: Option<&'a Bound<'py, PyAny>>,
    pub x_test: Option<&'a Bound<'py, PyAny>>,
    pub y_test: Option<&'a Bound<'py, PyAny>>,
    pub class_names: Option<Vec<String>>,
    pub spec: DataSpec,
    /// Whether a kernel of the run reads images (flat arrays are refused).
    pub needs_images: bool,
}

/// The prepared data and the shape of one point as the caller gave it.
fn prepare(py: Python<'_>, d: DataArgs<'_, '_>) -> PyResult<(Prepared, Vec<usize>, DataSpec)> {
    let mut spec = d.spec;
    match (d.x, d.y) {
        (Some(x), Some(y)) => {
            let test = match (d.x_test, d.y_test, spec.holdout) {
                (Some(a), Some(b), 0) => Some((a, b)),
                (None, None, h) if h > 0 => None,
                (Some(_), Some(_), _) => {
                    return Err(PyValueError::new_err("give x_test and y_test, or holdout=N, not both"))
                }
                (None, None, _) => {
                    return Err(PyValueError::new_err(
                        "no test set: give x_test and y_test, or holdout=N (the last N images of x)",
                    ))
                }
                _ => return Err(PyValueError::new_err("x_test and y_test go together")),
            };
            let (split, dims) = array_split(x, y, test, d.class_names)?;
            if d.needs_images && dims.len() < 2 {
                return Err(PyValueError::new_err(format!(
                    "x: convolutional kernels read images, but x holds flat points (shape (n, {})); \
                     pass x as (n, h, w, c) (or (n, h, w)) arrays",
                    dims[0]
                )));
            }
            spec.dataset = IN_MEMORY_DATASET.to_string();
            spec.data_dir = None;
            let prepared = py.detach(|| spec.prepare(split)).map_err(data_err)?;
            Ok((prepared, dims, spec))
        }
        (None, None) => {
            if d.x_test.is_some() || d.y_test.is_some() {
                return Err(PyValueError::new_err("x_test and y_test need x and y"));
            }
            let prepared = py.detach(|| spec.load()).map_err(data_err)?;
            let dims = shape_dims(prepared.train.shape());
            Ok((prepared, dims, spec))
        }
        _ => Err(PyValueError::new_err(
            "x and y go together (or give neither and name a dataset)",
        )),
    }
}

/// Run KIP and return the result (see the stub for the parameters).
pub fn distill(
    py: Python<'_>,
    data: DataArgs<'_, '_>,
    opts: DistillOptions,
    out: Option<PathBuf>,
    resume: bool,
    callback: Option<Py<PyAny>>,
) -> PyResult<PyRun> {
    if let Some(cb) = &callback {
        if !cb.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "callback: expected a callable or None",
            ));
        }
    }
    if resume && out.is_none() {
        return Err(PyValueError::new_err(
            "resume=True needs out=RUN_DIR (the run directory to continue)",
        ));
    }
    let temp = match &out {
        Some(_) => None,
        None => Some(tempfile::tempdir().map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?),
    };
    let dir = out
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("temp dir").path().join("run"));
    let in_memory = data.x.is_some();
    let mut runner = if resume {
        require_dir(&dir, "out")?;
        let steps = Some(opts.kip.steps);
        if in_memory {
            // The arrays are prepared as the run recorded (preprocessing,
            // holdout), whatever this call's defaults say.
            let recorded = RunDir::open(&dir).and_then(|d| d.read_config()).map_err(meta_err)?;
            let mut data = data;
            data.spec.preprocess = recorded.data().preprocess;
            data.spec.holdout = recorded.data().holdout;
            let (prepared, _, _) = prepare(py, data)?;
            Runner::resume_with(&dir, Resume { steps, data_dir: None }, prepared)
        } else {
            let data_dir = data.spec.data_dir.clone();
            py.detach(|| Runner::resume(&dir, Resume { steps, data_dir }))
        }
    } else {
        let mut kip = opts.kip;
        kip.clone().check().map_err(meta_err)?;
        RunDir::ensure_new(&dir).map_err(meta_err)?;
        let (prepared, _, spec) = prepare(py, data)?;
        kip.n_target = opts
            .target_batch
            .unwrap_or_else(|| default_target_batch(&prepared.train));
        let config = RunConfig {
            data: spec,
            kip,
            eval_every: opts.eval_every,
            checkpoint_every: opts.checkpoint_every,
            eval_block: opts.eval_block,
            keep_best: opts.keep_best,
            ..RunConfig::default()
        };
        py.detach(|| Runner::create_with(&dir, config, prepared))
    }
    .map_err(meta_err)?;
    let shape = runner.kip().train().shape();
    let mut observer = PyObserver { callback, error: None };
    let outcome = py.detach(|| runner.run(&mut observer)).map_err(meta_err)?;
    if let Some(e) = observer.error {
        return Err(e);
    }
    let stopped = matches!(outcome, RunOutcome::Stopped { .. });
    let dims = result_dims(in_memory, shape);
    run_result(py, runner.dir(), &dims, out, stopped)
}

/// Points come back as `(n, h, w, c)` images, or `(n, d)` when the caller
/// handed flat points over (stored as `1 × d × 1` images).
fn result_dims(in_memory: bool, shape: ImageShape) -> Vec<usize> {
    if in_memory && shape.h == 1 && shape.c == 1 {
        vec![shape.w]
    } else {
        shape_dims(shape)
    }
}

/// The KIP parameters from the call's values.
#[allow(clippy::too_many_arguments)]
pub fn kip_params(
    kernel: &str,
    support: usize,
    steps: usize,
    lr: f64,
    lr_schedule: &str,
    precision: &str,
    learn_labels: bool,
    reg: f64,
    init: &str,
    init_std: f64,
    corrupt: f64,
    seed: u64,
    target_shards: usize,
    augment: &str,
    eval_kernel: Option<&str>,
    loss: &str,
) -> PyResult<KipParams> {
    let kernels = KernelSpec::parse_list(kernel)
        .map_err(|e| PyValueError::new_err(format!("kernel {kernel:?}: {e}")))?
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(KipParams {
        kernels,
        n_support: support,
        n_target: 1,
        steps,
        adam: AdamParams {
            lr,
            ..AdamParams::default()
        },
        lr_schedule: lr_schedule
            .parse()
            .map_err(|e| PyValueError::new_err(format!("lr_schedule {lr_schedule:?}: {e}")))?,
        precision: precision
            .parse()
            .map_err(|e| PyValueError::new_err(format!("precision {precision:?}: {e}")))?,
        reg,
        learn_labels,
        init: Init::from_name(init, init_std).map_err(|e| PyValueError::new_err(format!("init {e}")))?,
        corrupt,
        seed,
        target_shards,
        augment: augment
            .parse()
            .map_err(|e| PyValueError::new_err(format!("augment {augment:?}: {e}")))?,
        // Set by the caller (`augment_support=`).
        augment_support: Default::default(),
        eval_kernel: eval_kernel
            .map(|k| {
                k.parse::<KernelSpec>()
                    .map(|s| s.to_string())
                    .map_err(|e| PyValueError::new_err(format!("eval_kernel {k:?}: {e}")))
            })
            .transpose()?,
        loss: loss
            .parse()
            .map_err(|e| PyValueError::new_err(format!("loss {loss:?}: {e}")))?,
    })
}
