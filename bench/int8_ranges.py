"""Why static int8 activations lose what dynamic-range int8 keeps: activation ranges per token kind.

Full-integer int8 gives every activation tensor one scale, fixed at calibration; dynamic-range int8
quantizes each fully-connected layer's input at run time row by row, i.e. per token. This measures,
for each transformer layer's output (the input of the next layer's query/key/value kernels), the
largest |activation| of each token in real dev sentences packed to the exported 128 tokens, by kind
of token: [CLS], [SEP], word pieces, padding.

    python bench/int8_ranges.py --model runs/rpp_vs_nip/rpp_80/rt_polarity/model.keras
"""

import argparse
import os

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
from tf_rpp import data  # noqa: E402
from tf_rpp import distill  # noqa: E402
from tf_rpp import export  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a fine-tuned rt_polarity classifier (.keras)")
    p.add_argument("--sentences", type=int, default=256, help="dev sentences (default 256)")
    p.add_argument("--sequence-length", type=int, default=128)
    args = p.parse_args(argv)
    model = tf_rpp.load_model(args.model, compile=False)
    tokenizer = model.preprocessor.tokenizer
    texts = [t for t, _ in data.examples("rt_polarity", "validation")][: args.sentences]
    # Packed as the exported file's inputs are, one batch of all the sentences.
    x = export.representative_inputs(texts, tokenizer, args.sequence_length, batch_size=len(texts))[0]
    ids, padding = x["token_ids"], x["padding_mask"] == 0
    kinds = {"[CLS]": ids == tokenizer.token_to_id("[CLS]"), "[SEP]": ids == tokenizer.token_to_id("[SEP]")}
    kinds["words"] = ~(kinds["[CLS]"] | kinds["[SEP]"] | padding)
    kinds["padding"] = padding
    outputs = distill.encoder_outputs(model.backbone).predict(x, batch_size=32, verbose=0)
    print(f"max |activation| per token, {len(texts)} dev sentences at {args.sequence_length} tokens "
          "(median over tokens of the kind / largest)")
    print("layer  " + "  ".join(f"{k:>13}" for k in kinds) + "  tensor max")
    for i, h in enumerate(outputs):
        per_token = np.abs(h).max(-1)
        cells = [f"{np.median(per_token[m]):6.2f}/{per_token[m].max():6.2f}" for m in kinds.values()]
        print(f"{i:5d}  " + "  ".join(cells) + f"  {per_token.max():10.2f}")


if __name__ == "__main__":
    main()
