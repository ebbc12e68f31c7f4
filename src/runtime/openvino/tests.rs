//! The in-place hand-over of inputs and outputs against the copying path, on the real runtime
//! and the fixture models: same results, the fallback taken where a pointer is misaligned, and
//! no inference ever reading or writing a previous request's memory.

use super::executor::{HandOver, OpenVinoExecutor};
use super::{library, OpenVinoBackend, OpenVinoModel};
use crate::runtime::{Executor, LoadSpec, Reshape};
use crate::serving::validate::ValidatedInputs;
use crate::tensor::{tensor_to_vec, DataType, Tensor};
use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Once;

fn model(name: &str, in_place_min_bytes: usize) -> OpenVinoModel {
    static LOAD: Once = Once::new();
    LOAD.call_once(|| {
        library::load(None).expect("OpenVINO runtime (run scripts/setup.sh)");
    });
    let spec = LoadSpec {
        model: name.into(),
        version: 1,
        dir: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/models/{name}/1")),
        device: "CPU".into(),
        plugin_config: [("INFERENCE_PRECISION_HINT".into(), "f32".into())].into(),
        reshape: Reshape::None,
    };
    let mut model = OpenVinoBackend.load_model(&spec).unwrap();
    model.in_place_min_bytes = in_place_min_bytes;
    model
}

/// An executor that lends every non-empty tensor, and one that copies every tensor.
fn lending_and_copying(name: &str) -> (OpenVinoExecutor, OpenVinoExecutor) {
    (
        model(name, 0).executor().unwrap(),
        model(name, usize::MAX).executor().unwrap(),
    )
}

fn f32_tensor(shape: Vec<usize>, values: &[f32]) -> Tensor {
    Tensor::raw(DataType::F32, shape, bytemuck::cast_slice(values).to_vec())
}

/// The same f32 values starting one byte into their buffer: misaligned for f32.
fn misaligned_f32(shape: Vec<usize>, values: &[f32]) -> Tensor {
    let mut buffer = vec![0u8];
    buffer.extend_from_slice(bytemuck::cast_slice(values));
    let bytes = Bytes::from(buffer).slice(1..);
    assert!(!(bytes.as_ptr() as usize).is_multiple_of(4));
    Tensor::raw(DataType::F32, shape, bytes)
}

/// Runs `inputs`, returns the first `outputs` outputs as f32.
fn run(executor: &mut OpenVinoExecutor, inputs: Vec<Tensor>, outputs: usize) -> Vec<Vec<f32>> {
    let outputs: Vec<usize> = (0..outputs).collect();
    executor
        .infer(&ValidatedInputs::trusted(inputs), &outputs)
        .unwrap()
        .iter()
        .map(|t| tensor_to_vec::<f32>(t).unwrap())
        .collect()
}

fn rows(n: usize, seed: usize) -> Vec<f32> {
    (0..n * 8)
        .map(|i| (seed * 1000 + i) as f32 * 0.5 - 7.0)
        .collect()
}

#[test]
fn lent_inputs_give_the_copying_path_results_at_every_size() {
    let (mut lending, mut copying) = lending_and_copying("dynamic");
    for (round, n) in [1usize, 7, 64, 3, 300, 1, 2048, 5].into_iter().enumerate() {
        let x = rows(n, round);
        let expected: Vec<f32> = x.iter().map(|v| v * 3.0).collect();
        let lent = run(&mut lending, vec![f32_tensor(vec![n, 8], &x)], 1);
        let copied = run(&mut copying, vec![f32_tensor(vec![n, 8], &x)], 1);
        assert_eq!(lent, vec![expected.clone()], "{n} rows, lent");
        assert_eq!(copied, vec![expected], "{n} rows, copied");
    }
    assert_eq!(
        lending.hand_over,
        HandOver {
            inputs_in_place: 8,
            ..HandOver::default()
        }
    );
    assert_eq!(
        copying.hand_over,
        HandOver {
            inputs_copied: 8,
            ..HandOver::default()
        }
    );
}

#[test]
fn a_misaligned_input_is_copied_and_still_right() {
    let (mut lending, _) = lending_and_copying("dynamic");
    let x = rows(5, 1);
    let y = run(&mut lending, vec![misaligned_f32(vec![5, 8], &x)], 1);
    assert_eq!(y, vec![x.iter().map(|v| v * 3.0).collect::<Vec<_>>()]);
    assert_eq!(lending.hand_over.inputs_copied_misaligned, 1);
    assert_eq!(lending.hand_over.inputs_in_place, 0);
}

/// Each request's bytes are dropped and their memory reused right after its answer; the next
/// request alternates lent, misaligned (copied into OpenVINO's own tensor) and different sizes.
/// An infer request still pointing at a previous request's bytes would compute from them.
#[test]
fn no_inference_reads_a_previous_requests_memory() {
    let (mut lending, _) = lending_and_copying("dynamic");
    for round in 0..60 {
        let n = 1 + (round * 37) % 97;
        let x = rows(n, round);
        let tensor = if round % 3 == 2 {
            misaligned_f32(vec![n, 8], &x)
        } else {
            f32_tensor(vec![n, 8], &x)
        };
        let y = run(&mut lending, vec![tensor], 1);
        assert_eq!(
            y,
            vec![x.iter().map(|v| v * 3.0).collect::<Vec<_>>()],
            "round {round}, {n} rows"
        );
        // Whatever the allocator hands out next likely reuses the freed input: scribble on it.
        let scribble = vec![f32::NAN; n * 8];
        std::hint::black_box(&scribble);
    }
    assert_eq!(lending.hand_over.inputs_in_place, 40);
    assert_eq!(lending.hand_over.inputs_copied_misaligned, 20);
}

/// Outputs written straight into buffers of ours, then (through `infer_with`, which lends no
/// output) into OpenVINO's own tensors again: both right, in either order.
#[test]
fn lent_outputs_match_and_the_request_gets_its_own_tensors_back() {
    let (mut lending, mut copying) = lending_and_copying("two_io");
    for round in 0..20 {
        let a: Vec<f32> = (0..4).map(|i| (round * 4 + i) as f32).collect();
        let b: Vec<f32> = (0..4).map(|i| 1.5 - (round + i) as f32).collect();
        let inputs = || vec![f32_tensor(vec![1, 4], &a), f32_tensor(vec![1, 4], &b)];
        let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let product: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        let expected = vec![sum, product];
        if round % 2 == 0 {
            assert_eq!(
                run(&mut lending, inputs(), 2),
                expected,
                "round {round}, lent"
            );
        } else {
            let mut seen = Vec::new();
            lending
                .infer_with(
                    &ValidatedInputs::trusted(inputs()),
                    &[0, 1],
                    &mut |dtype, _, bytes| {
                        assert_eq!(dtype, DataType::F32);
                        seen.push(bytemuck::pod_collect_to_vec::<u8, f32>(bytes));
                        Ok(())
                    },
                )
                .unwrap();
            assert_eq!(seen, expected, "round {round}, infer_with");
        }
        assert_eq!(
            run(&mut copying, inputs(), 2),
            expected,
            "round {round}, copied"
        );
    }
    assert_eq!(lending.hand_over.outputs_in_place, 20);
    assert_eq!(copying.hand_over.outputs_in_place, 0);
}

#[test]
fn other_element_types_are_lent_too() {
    let (mut lending, mut copying) = lending_and_copying("uint8");
    let x: Vec<u8> = vec![0, 1, 2, 128, 254, 255];
    // One byte in: u8 needs no alignment, so this is lent as well.
    let mut buffer = vec![9u8];
    buffer.extend_from_slice(&x);
    let offset = Bytes::from(buffer).slice(1..);
    let outputs = |executor: &mut OpenVinoExecutor, bytes: Bytes| {
        executor
            .infer(
                &ValidatedInputs::trusted(vec![Tensor::raw(DataType::U8, vec![1, 6], bytes)]),
                &[0],
            )
            .unwrap()[0]
            .raw_bytes()
            .to_vec()
    };
    let expected: Vec<u8> = x.iter().map(|v| v.wrapping_add(1)).collect();
    assert_eq!(outputs(&mut lending, offset), expected);
    assert_eq!(outputs(&mut copying, Bytes::from(x)), expected);
    assert_eq!(lending.hand_over.inputs_in_place, 1);
    assert_eq!(lending.hand_over.outputs_in_place, 1);
}

#[test]
fn small_tensors_are_copied_at_the_default_threshold() {
    let mut executor = model("identity", super::IN_PLACE_MIN_BYTES)
        .executor()
        .unwrap();
    let x: Vec<f32> = (0..10).map(|i| i as f32 - 4.5).collect();
    assert_eq!(
        run(&mut executor, vec![f32_tensor(vec![1, 10], &x)], 1),
        vec![x]
    );
    assert_eq!(
        executor.hand_over,
        HandOver {
            inputs_copied: 1,
            ..HandOver::default()
        }
    );
}
