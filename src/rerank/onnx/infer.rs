//! Running one padded batch through a worker's session, directly or through ONNX
//! Runtime's IO binding.
//!
//! Each worker owns one session, and with IO binding one binding and (on CUDA) one
//! pinned-memory allocator, all made at load: nothing is created per request.
//! IO binding binds the batch's inputs and its output each batch; the output is
//! bound to host memory (CUDA-pinned on a GPU, so the copy back is a DMA and not
//! a staged copy), and on a GPU the inputs are written into pinned host memory from
//! the worker's allocator, which ONNX Runtime copies to the device asynchronously.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynValue, Tensor};

use super::encode::{pad, Batch, Pair};
use super::model::{scores_from_output, Inputs};
use super::session::Device;

/// A cross-encoder session of one worker.
pub(crate) struct Runner {
    session: Session,
    inputs: Inputs,
    bound: Option<Bound>,
    pad_id: i64,
}

impl super::worker::Score for Runner {
    fn score(&mut self, pairs: &[Pair], rows: &[usize]) -> Result<Vec<f32>, String> {
        let batch = pad(pairs, rows, self.pad_id);
        self.run(batch)
    }
}

struct Bound {
    binding: IoBinding,
    output: String,
    output_memory: MemoryInfo<'static>,
    /// Pinned host memory for the inputs (CUDA); `None`: ordinary CPU memory.
    pinned: Option<Allocator>,
}

impl Runner {
    /// A runner for `session` on `device`, through IO binding when `io_binding`.
    pub fn new(
        session: Session,
        inputs: Inputs,
        device: Device,
        io_binding: bool,
        pad_id: i64,
    ) -> Result<Runner, String> {
        let bound = if io_binding {
            Some(Bound::new(&session, device).map_err(|e| {
                format!("io_binding on {device}: {e} (set io_binding = false to run without it)")
            })?)
        } else {
            None
        };
        Ok(Runner {
            session,
            inputs,
            bound,
            pad_id,
        })
    }

    /// One raw score per row of `b`.
    pub fn run(&mut self, b: Batch) -> Result<Vec<f32>, String> {
        let rows = b.rows;
        let shape = [b.rows, b.width];
        let mut data = vec![
            ("input_ids", b.input_ids),
            ("attention_mask", b.attention_mask),
        ];
        if self.inputs.token_type_ids {
            data.push(("token_type_ids", b.token_type_ids));
        }
        let e = |e: ort::Error| e.to_string();
        match &mut self.bound {
            None => {
                let inputs = data
                    .into_iter()
                    .map(|(name, v)| {
                        Ok((name, Tensor::from_array((shape, v)).map_err(e)?.into_dyn()))
                    })
                    .collect::<Result<Vec<(&str, DynValue)>, String>>()?;
                let outputs = self.session.run(inputs).map_err(e)?;
                scores_from_output(&outputs[0], rows)
            }
            Some(bound) => {
                for (name, v) in data {
                    let t = bound.tensor(shape, v)?;
                    bound.binding.bind_input(name, &t).map_err(e)?;
                }
                // Bound again each batch: once run, a binding keeps the output it
                // allocated and expects the next batch to have the same shape.
                bound
                    .binding
                    .bind_output_to_device(bound.output.as_str(), &bound.output_memory)
                    .map_err(e)?;
                let outputs = self.session.run_binding(&bound.binding).map_err(e)?;
                scores_from_output(&outputs[0], rows)
            }
        }
    }
}

impl Bound {
    fn new(session: &Session, device: Device) -> Result<Bound, String> {
        let e = |e: ort::Error| e.to_string();
        let binding = session.create_binding().map_err(e)?;
        let output = session
            .outputs()
            .first()
            .map(|o| o.name().to_string())
            .ok_or("the model has no output")?;
        let (output_memory, pinned) = match device {
            Device::Cpu => (
                MemoryInfo::new(
                    AllocationDevice::CPU,
                    0,
                    AllocatorType::Device,
                    MemoryType::Default,
                )
                .map_err(e)?,
                None,
            ),
            Device::Cuda(id) => {
                let id = id as i32;
                let pinned = |t| {
                    MemoryInfo::new(AllocationDevice::CUDA_PINNED, id, AllocatorType::Device, t)
                };
                let inputs = Allocator::new(session, pinned(MemoryType::CPUInput).map_err(e)?)
                    .map_err(|err| format!("no CUDA-pinned allocator: {err}"))?;
                (pinned(MemoryType::CPUOutput).map_err(e)?, Some(inputs))
            }
        };
        Ok(Bound {
            binding,
            output,
            output_memory,
            pinned,
        })
    }

    fn tensor(&self, shape: [usize; 2], v: Vec<i64>) -> Result<Tensor<i64>, String> {
        let e = |e: ort::Error| e.to_string();
        match &self.pinned {
            None => Tensor::from_array((shape, v)).map_err(e),
            Some(alloc) => {
                let mut t = Tensor::<i64>::new(alloc, shape).map_err(e)?;
                t.extract_tensor_mut().1.copy_from_slice(&v);
                Ok(t)
            }
        }
    }
}
