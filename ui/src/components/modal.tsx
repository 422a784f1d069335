import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

/**
 * A modal `<dialog>` (focus moves into it and stays there; Escape closes it), open while `open`.
 * `onClose` hears when it closes by itself (Escape), so the page can set `open` false.
 */
export function Modal(props: {
  open: boolean;
  onClose: () => void;
  labelledBy: string;
  children: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  // Closed by the page (open turned false): the page knows; only other ways are told.
  const open = useRef(props.open);
  open.current = props.open;
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog
      ref={ref}
      onClose={() => {
        if (open.current) props.onClose();
      }}
      aria-labelledby={props.labelledBy}
    >
      {props.open && props.children}
    </dialog>
  );
}
